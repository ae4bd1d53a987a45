"""Post predictions to meshlab's collector from a model server that is not KServe.

The contract is ``docs/collector-contract.md``: one ``POST /events/<arm>`` per prediction, with the
``x-request-id`` of the request that was answered. Use it as a library inside your server::

    client = CollectorClient("http://meshlab-collector.models.svc:8080", arm="candidate",
                             token=os.environ["MESHLAB_COLLECTOR_TOKEN"])
    client.post(request_id=request.headers["x-request-id"], prediction=answer,
                latency_ms=elapsed_ms, status=200)

(call it from a worker thread or a queue, never on the request path), or from the shell::

    MESHLAB_COLLECTOR_TOKEN=... python examples/collector_client.py \\
        --url http://127.0.0.1:8080 --arm candidate --request-id r-1 --prediction '{"label": 1}'

It retries connection errors, 408 and 503 with backoff, and does not retry what will not get
better (400, 401, 404, 413): it raises with the collector's one-line reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import httpx

RETRIED = {408, 503}


class CollectorError(Exception):
    """The collector refused a record; the message is its one-line reason."""


class CollectorClient:
    """One version's connection to the collector (keep-alive, retries, bearer token)."""

    def __init__(
        self,
        url: str,
        arm: str,
        *,
        token: str | None = None,
        ca_file: str | None = None,
        client_cert: tuple[str, str] | None = None,
        timeout: float = 5.0,
        attempts: int = 4,
        idle_seconds: float = 4.0,  # below the collector's requestTimeout (default 10 s)
    ) -> None:
        if arm not in ("baseline", "candidate"):
            raise ValueError("arm must be 'baseline' or 'candidate'")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        verify: Any = True
        if ca_file:
            verify = httpx.create_ssl_context(verify=ca_file, cert=client_cert)
        self.path = f"/events/{arm}"
        self.attempts = attempts
        self._client = httpx.Client(
            base_url=url.rstrip("/"),
            headers=headers,
            timeout=timeout,
            verify=verify,
            limits=httpx.Limits(keepalive_expiry=idle_seconds),
        )

    def post(
        self,
        request_id: str,
        prediction: Any = None,
        *,
        latency_ms: float | None = None,
        status: int = 200,
        started: float | None = None,
    ) -> None:
        """Send one record; raises :class:`CollectorError` if the collector refuses it."""
        record: dict[str, Any] = {"requestId": request_id, "status": status}
        if prediction is not None:
            record["prediction"] = prediction
        if latency_ms is not None:
            record["latencyMs"] = latency_ms
        if started is not None:
            record["time"] = started
        body = json.dumps(record, allow_nan=False).encode()  # NaN would be refused anyway
        delay = 0.1
        for attempt in range(1, self.attempts + 1):
            try:
                answer = self._client.post(
                    self.path, content=body, headers={"content-type": "application/json"}
                )
            except httpx.TransportError as exc:
                if attempt == self.attempts:
                    raise CollectorError(f"collector unreachable: {exc!r}") from exc
            else:
                if answer.status_code == 200:
                    return
                if answer.status_code not in RETRIED or attempt == self.attempts:
                    raise CollectorError(f"{answer.status_code}: {answer.text.strip()}")
            time.sleep(delay)
            delay *= 2

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> CollectorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--url", required=True, help="the collector, e.g. http://127.0.0.1:8080")
    parser.add_argument("--arm", required=True, choices=["baseline", "candidate"])
    parser.add_argument("--request-id", required=True, help="the x-request-id you answered")
    parser.add_argument("--prediction", help="a JSON value")
    parser.add_argument("--latency-ms", type=float)
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--token-env", default="MESHLAB_COLLECTOR_TOKEN")
    parser.add_argument("--ca-file", help="CA bundle of an https collector")
    args = parser.parse_args(argv)
    prediction = json.loads(args.prediction) if args.prediction is not None else None
    token = os.environ.get(args.token_env) or None
    try:
        with CollectorClient(args.url, args.arm, token=token, ca_file=args.ca_file) as client:
            client.post(args.request_id, prediction, latency_ms=args.latency_ms, status=args.status)
    except CollectorError as exc:
        print(f"collector_client: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
