"""Sound verdicts from bucketed latencies: bracket each pseudo-sample between its bucket's bounds.

Placing every request at its bucket's upper bound (what :mod:`meshlab.metrics.histogram` does) is
NOT conservative for a comparison: both arms move up together, so two arms whose medians share a
bucket look identical. Measured (the README's Prometheus section has the table): with
Istio's default buckets a candidate 50% slower (p50 30 ms -> 45 ms) is *promoted* by the plain
approximation, because both medians fall in (25, 50] ms.

:class:`BracketedComparison` fixes that with two comparisons over the same stream:

* **pessimistic**: candidate latencies at their bucket's upper bound, baseline at its lower bound.
  Its promote-side bounds are at least as high as the true data's (the comparison is monotone in
  each arm's values), so promote-side guarantees (``beta``) still hold.
* **optimistic**: candidate at lower bounds, baseline at upper bounds; its abort-side bounds are at
  most the true data's, so abort-side guarantees (``alpha``) still hold.

Each metric's result takes its promote-side ``upper`` from the pessimistic comparison and its
abort-side ``lower`` from the optimistic one; the verdict is then the ordinary pure
:func:`meshlab.stats.results.decide`. Error-rate and divergence results are identical in both
(statuses and predictions are not moved). The price is honest: when a bucket is wider than the
tolerance the latency metric can only be inconclusive (or abort on a difference of whole buckets).
Finer buckets fix it: :func:`geometric_buckets`, then :func:`istio_buckets_annotation` (pods) or
:func:`envoy_bucket_settings` (the local mesh's bootstrap).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from meshlab.samples import CANDIDATE, Samples
from meshlab.spec.analysis import Analysis
from meshlab.stats.comparison import Comparison, Mode
from meshlab.stats.results import Assessment, Decision, MetricResult, decide

# Istio's istio_request_duration_milliseconds and Envoy's upstream_rq_time defaults (identical).
DEFAULT_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
    1800000, 3600000,
)  # fmt: skip


_FLOOR_MS = 1e-6


def lower_bounds(
    latency_ms: npt.NDArray[np.float64], bounds: Sequence[float]
) -> npt.NDArray[np.float64]:
    """The lower bound of the bucket each pseudo-latency stands for (0 for the first bucket).

    A value that is not a bucket bound (a raw observation) is its own lower bound.
    """
    edges = np.array(sorted(b for b in bounds if math.isfinite(b)), dtype=np.float64)
    if edges.size == 0:
        return latency_ms.copy()
    index = np.searchsorted(edges, latency_ms)  # edges[index] >= value
    inside = index < edges.size
    exact = inside & (edges[np.minimum(index, edges.size - 1)] == latency_ms)
    previous = np.where(index > 0, edges[np.maximum(index - 1, 0)], 0.0)
    return np.where(exact, previous, latency_ms)


def _with_latency(batch: Samples, latency: npt.NDArray[np.float64]) -> Samples:
    return dataclasses.replace(batch, latency_ms=latency)


class BracketedComparison:
    """Drop-in for :class:`meshlab.stats.comparison.Comparison` on bucket pseudo-samples."""

    def __init__(
        self,
        analysis: Analysis,
        mode: Mode = "canary",
        *,
        bounds: Sequence[float] | Callable[[], Sequence[float]] = DEFAULT_BUCKETS_MS,
        control: bool = False,
    ) -> None:
        """``bounds``: the bucket bounds (ms) of the pseudo-samples, or a callable returning them
        at each update (e.g. ``lambda: backend.bounds or DEFAULT_BUCKETS_MS``), since a backend
        learns the buckets only from its first data. ``control``: compare the candidate with the
        control arm's series (``arm`` 2) instead of the baseline's, as ``Comparison`` does."""
        self.analysis = analysis
        self.mode = mode
        self._bounds = bounds
        # pseudo-samples carry no request pairing: shadow errors keep the two-sample test
        self.pessimistic = Comparison(
            analysis, mode, control=control, paired_errors=False, paired_bets=False
        )
        self.optimistic = Comparison(
            analysis, mode, control=control, paired_errors=False, paired_bets=False
        )
        self.decision: Decision | None = None
        self._first: float | None = None
        self._last = 0.0
        self._n = 0

    @property
    def bounds(self) -> tuple[float, ...]:
        """The bucket bounds in force now."""
        return tuple(self._bounds() if callable(self._bounds) else self._bounds)

    def update(self, batch: Samples) -> None:
        """Add pseudo-samples whose latencies sit at bucket upper bounds."""
        if len(batch) == 0:
            return
        if self._first is None:
            self._first = float(batch.timestamp[0])
        self._last = float(batch.timestamp[-1])
        self._n += len(batch)
        upper = batch.latency_ms
        # 0 ms (the first bucket's lower bound) makes LogGrid.index warn (log(0) cast to int);
        # a microsecond floor lands in the same lowest bin.
        lower = np.maximum(lower_bounds(upper, self.bounds), _FLOOR_MS)
        candidate = batch.arm == CANDIDATE
        self.pessimistic.update(_with_latency(batch, np.where(candidate, upper, lower)))
        self.optimistic.update(_with_latency(batch, np.where(candidate, lower, upper)))

    def assess(self) -> Assessment:
        """Per metric: promote side from the pessimistic data, abort side from the optimistic."""
        worst, best = self.pessimistic.assess(), self.optimistic.assess()
        results = tuple(_combine(w, b) for w, b in zip(worst.metrics, best.metrics, strict=True))
        verdict = decide(results)
        if self.decision is None and verdict.outcome != "inconclusive":
            start = self._first if self._first is not None else self._last
            self.decision = Decision(verdict.outcome, self._n - 1, self._last - start)
        return dataclasses.replace(
            worst, verdict=verdict, metrics=results, decision=self.decision,
            warnings=(*worst.warnings, _NOTE),
        )  # fmt: skip


_NOTE = (
    "latencies come from histogram buckets and are bracketed: promote-side bounds use the "
    "candidate at bucket upper bounds and the baseline at lower bounds, abort-side bounds the "
    "reverse; a bucket wider than a tolerance keeps that metric inconclusive"
)


def _combine(worst: MetricResult, best: MetricResult) -> MetricResult:
    if worst.type != "latency":
        return worst
    estimate = (worst.estimate + best.estimate) / 2
    return dataclasses.replace(
        worst,
        estimate=estimate,
        lower=best.lower,
        method=f"{worst.method}, bucket-bracketed",
        guarantee=f"{worst.guarantee} (valid for any latencies inside the observed buckets)",
    )


def istio_buckets_annotation(bounds: Sequence[float]) -> dict[str, str]:
    """Pod annotation giving Istio's request-duration histogram these buckets (Istio >= 1.19)."""
    return {"sidecar.istio.io/statsHistogramBuckets": json.dumps({"istiocustom": list(bounds)})}
