"""A sidecar that posts the local mesh's captured shadow answers to the collector, per the contract.

With ``metrics.source: collector`` on the local mesh the shadow's predictions travel the way they
do in a cluster whose model servers are not KServe: one ``POST /events/candidate`` per prediction
(``docs/collector-contract.md``: ``requestId``, ``prediction``, ``latencyMs``, ``status``,
``time``) to the run's collector, which joins them with the load generator's primaries by request
id. The answers themselves are the real model server's, captured behind real Envoy by the mesh's
tap. :class:`TapForwarder` runs on its own thread, stops on :meth:`TapForwarder.close` (a run
closer), and counts what it could not deliver (the collector counts what it refused).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from meshlab.samples import Sample


def contract_record(row: Sample) -> dict[str, Any]:
    """One prediction as the contract's JSON object."""
    record: dict[str, Any] = {
        "requestId": row.request_id,
        "latencyMs": max(0.0, row.latency_ms),
        "status": row.status,
        "time": row.timestamp,
    }
    if row.prediction:
        try:
            record["prediction"] = json.loads(row.prediction)
        except ValueError:
            record["prediction"] = row.prediction
    return record


class TapForwarder:
    """Poll ``captured`` every ``interval`` seconds and post each row to ``url``/events/<arm>."""

    def __init__(
        self,
        captured: Callable[[], list[Sample]],
        url: str,
        *,
        authorization: str | None = None,
        interval: float = 0.1,
    ) -> None:
        import httpx

        headers = {"authorization": authorization} if authorization else {}
        self._client = httpx.Client(base_url=url, timeout=5.0, headers=headers)
        self._captured = captured
        self._interval = interval
        self._stop = threading.Event()
        self.posted = 0
        self.failed = 0  # not delivered (connection refused, timeout) or refused by the collector
        self._thread = threading.Thread(target=self._run, daemon=True, name="meshlab-forwarder")

    def start(self) -> TapForwarder:
        self._thread.start()
        return self

    def _run(self) -> None:
        import httpx

        while True:
            stopping = self._stop.is_set()
            for row in self._captured():
                try:
                    answer = self._client.post(f"/events/{row.arm}", json=contract_record(row))
                    ok = answer.status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.posted += ok
                self.failed += not ok
            if stopping:  # one last drain after close() was asked
                return
            self._stop.wait(self._interval)

    def close(self) -> None:
        """Drain what the tap holds, stop the thread and the client (idempotent)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10.0)
        self._client.close()
