"""The collector's life inside one run: started from the spec, fed live, counted, always stopped.

``meshlab shadow start --target kubernetes`` cannot see the shadow's answers (Istio drops them), so
the run starts a :class:`~meshlab.collector.server.Collector` from ``spec.metrics.collector`` and
reads the shadow's predictions from it. :class:`RunCollector` ties that listener to the run: its
:meth:`RunCollector.close` is one of the run's closers (called on every exit path: decision, error,
Ctrl-C, SIGTERM), it stops the listener first and then writes ``collector.json`` into the run
directory with what was refused by reason, what was joined and what stayed unpaired, so the report
can say whether the divergence verdict rests on all that was posted.

Which rows carry latency and errors is stated in ``timings``: with ``metrics.source: samples``
the primary's come from the load generator's responses and the shadow's from the collector's own
timings (the gap between the logged request and response events, or ``latencyMs`` posted per the
contract in ``docs/collector-contract.md``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path

from meshlab.collector.live import CollectorLiveSamples
from meshlab.collector.server import Collector, collector_from_spec
from meshlab.errors import ConfigError
from meshlab.live import LiveSamples
from meshlab.spec.metrics import CollectorSpec

COLLECTOR_FILE = "collector.json"
TIMINGS_SAMPLES = (
    "latency and errors: the primary's from the load generator's responses, the shadow's from "
    "the collector's timings (logged request to response)"
)


class RunCollector:
    """A collector owned by one run; :meth:`close` is idempotent and never raises."""

    def __init__(
        self,
        spec: CollectorSpec,
        run_dir: Path,
        *,
        timings: str = TIMINGS_SAMPLES,
        environ: Mapping[str, str] | None = None,
        control: bool = False,
    ) -> None:
        self.spec = spec
        self.collector: Collector = collector_from_spec(spec, "candidate", environ, control)
        self.run_dir = run_dir
        self.timings = timings
        self.live: CollectorLiveSamples | None = None  # counts the unpaired rows it passed on
        self._lock = threading.Lock()
        self._closed = False

    def start(
        self,
        load: LiveSamples,
        *,
        settle: float = 5.0,
        also: Mapping[str, LiveSamples] | None = None,
    ) -> CollectorLiveSamples:
        """Listen, and return the live source: ``load``'s rows plus the shadow's from here (and
        ``also``'s, e.g. Prometheus's deltas, in the same ordered merge)."""
        try:
            self.collector.start()
        except OSError as exc:
            raise ConfigError(
                f"spec.metrics.collector.port: cannot listen on {self.spec.listen}:"
                f"{self.spec.port} ({exc.strerror or exc}); free the port or choose another"
            ) from exc
        self.live = CollectorLiveSamples(self.collector, load, settle=settle, also=also)
        return self.live

    def record(self) -> dict[str, object]:
        """What ``collector.json`` holds (and ``result.json`` under ``collector``)."""
        counts = self.collector.counts().to_json()
        unpaired = self.live.unpaired if self.live is not None else (0, 0)
        return {
            "timings": self.timings,
            **counts,
            "unpaired_primary": unpaired[0],
            "unpaired_shadow": unpaired[1],
        }

    def close(self) -> None:
        """Stop the listener (no orphan after any exit), then write the counts."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.collector.close()
        finally:
            path = self.run_dir / COLLECTOR_FILE
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(self.record(), indent=2, sort_keys=True), encoding="utf-8")
            tmp.replace(path)
