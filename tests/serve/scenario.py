"""Shared scenario helpers: background load through the local mesh, and the controller's own
threshold checks computed from the same Prometheus data (for the comparison table).

Flagger's built-in checks per interval: ``request-success-rate`` >= 99% and ``request-duration``
p99 < 500 ms, a check with no data ("no values found") counting as failed; ``threshold`` failed
checks roll back; promotion after ``maxWeight / stepWeight`` successful steps plus one. Argo's
typical web/prometheus metric: ``successCondition: result[0] >= 0.99`` on the interval's success
rate, ``failureLimit: 3``, ``count: 5`` (a measurement with no data is an Error, four in a row fail).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

import httpx

from tests.serve.conftest import CLUSTERS, MeshStack


class Load:
    """``rate`` requests/s through the mesh on a background thread until :meth:`stop`."""

    def __init__(self, stack: MeshStack, rate: float) -> None:
        self.stack, self.rate = stack, rate
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="serve-load")

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        with httpx.Client(base_url=self.stack.mesh.url, timeout=10) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    client.get("/predict")
                self.sent += 1
                next_at += 1.0 / self.rate
                time.sleep(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def _value(prometheus_url: str, query: str, at: float) -> float | None:
    body = httpx.get(
        f"{prometheus_url}/api/v1/query", params={"query": query, "time": f"{at:.3f}"}
    ).json()
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


@dataclass
class ThresholdJudge:
    """What the controller's own threshold analysis concludes at each interval (same data).

    Each check reads the candidate's counters and latency buckets at the check time minus their
    values one ``interval`` earlier (``X - X offset <interval>``): the requests of that interval.
    """

    prometheus_url: str
    interval: str  # PromQL duration of one interval, e.g. "5s"
    checks: list[tuple[float | None, float | None, int]] = field(default_factory=list)

    def _delta(self, selector: str, by: str = "") -> str:
        return f"sum{by}({selector}) - sum{by}({selector} offset {self.interval})"

    def check(self, at: float) -> tuple[float | None, float | None, int]:
        sel = f'envoy_cluster_name="{CLUSTERS["candidate"]}"'
        url = self.prometheus_url
        total = _value(url, self._delta(f"envoy_cluster_upstream_rq{{{sel}}}"), at)
        errors = _value(
            url,
            self._delta(f'envoy_cluster_upstream_rq{{{sel},envoy_response_code=~"5.."}}'),
            at,
        )
        buckets = self._delta(f"envoy_cluster_upstream_rq_time_bucket{{{sel}}}", " by (le)")
        p99 = _value(url, f"histogram_quantile(0.99, {buckets})", at) if total else None
        n = int(total or 0)
        rate = None if not n else 1.0 - (errors or 0.0) / n
        self.checks.append((rate, p99, n))
        return rate, p99, n

    def flagger(self, threshold: int = 5, steps: int = 5) -> tuple[str, int]:
        """(verdict, interval of the verdict) of Flagger's built-in checks on the same data:
        request-success-rate >= 99% and request-duration p99 < 500 ms, no data = failed check,
        rollback at ``threshold`` failed checks, promotion after ``steps`` weight steps + 1."""
        failed = passed = 0
        for i, (rate, p99, _) in enumerate(self.checks, start=1):
            ok = rate is not None and p99 is not None and rate >= 0.99 and p99 < 500
            failed += not ok
            passed += ok
            if failed >= threshold:
                return "rollback", i
            if passed > steps:
                return "promote", i
        return "undecided", len(self.checks)

    def argo(self, failure_limit: int = 3, count: int = 5) -> tuple[str, int]:
        """(verdict, measurement) of a typical Argo success-rate metric on the same data:
        ``successCondition: result[0] >= 0.99``, ``failureLimit: 3``, ``count: 5``; no data is a
        measurement Error, more than 4 in a row end the run in Error."""
        failed = errors = 0
        for i, (rate, _, _) in enumerate(self.checks, start=1):
            if rate is None:
                errors += 1
                if errors > 4:
                    return "error", i
                continue
            errors = 0
            failed += rate < 0.99
            if failed > failure_limit:
                return "failed", i
            if i >= count:
                return "successful", i
        return "undecided", len(self.checks)

    def requests_until(self, interval: int) -> int:
        """Candidate requests in the first ``interval`` checks."""
        return sum(n for _, _, n in self.checks[:interval])
