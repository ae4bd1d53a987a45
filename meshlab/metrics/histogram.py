"""Turn counter and histogram-bucket deltas into observations the statistics engine can use.

Prometheus holds no raw requests, only cumulative counts: requests per status code, and requests
per latency bucket (``le`` = upper bound in milliseconds). For one look window and one arm this
module builds *pseudo-samples*, one per request counted in the window:

* **latency** -- every request in bucket ``(a, b]`` is placed at ``b``, its upper bound. A
  latency is therefore overstated by less than one bucket width and never understated, except
  requests above the last finite bound, which are placed AT that bound (understated; their number
  is reported).
  Comparisons of quantiles are exact only to the resolution of the buckets: two arms whose true
  quantiles fall in the same bucket look identical, and a shift across a bucket boundary looks like
  a full bucket width. With Istio's default buckets (..., 25, 50, 100, 250, ... ms) that resolution
  is often coarser than a 10% tolerance; :func:`describe` says so per window. Placement alone is
  not safe for verdicts (both arms move together); analyse these samples with
  :class:`meshlab.metrics.bracket.BracketedComparison`, which brackets each value by its bucket.
* **status** -- the counter gives exact codes (Istio ``response_code``, Envoy
  ``envoy_response_code``) but not which latency went with which code; errors are spread evenly
  over the window instead of being joined to their true latencies.
* **order and time** -- timestamps are spread evenly over the window and latencies are interleaved
  (a fixed stride permutation, no randomness) so that no prefix of a window is biased.

If the counter and the histogram disagree on the number of requests (different scrape timing, or
requests that never reached an upstream), the counter wins and the latencies are resampled to its
count by quantile mapping. No requests is an empty result: never zeros that would read as a pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from meshlab.samples import is_error_status

APPROXIMATION = (
    "latency from Prometheus histogram buckets: each request is placed at its bucket's upper bound "
    "(overstated by < 1 bucket width; above the last finite bound it is placed at that bound); "
    "status codes are exact counts but are not joined to latencies; latency verdicts bracket "
    "each request between its bucket's bounds"
)


@dataclass(frozen=True)
class Buckets:
    """Non-cumulative bucket counts: ``counts[i]`` requests fell in ``(bounds[i-1], bounds[i]]``.

    ``bounds`` ascend and end with ``math.inf``.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.bounds) != len(self.counts) or not self.bounds:
            raise ValueError("bounds and counts must have the same non-zero length")
        if list(self.bounds) != sorted(set(self.bounds)) or self.bounds[-1] != math.inf:
            raise ValueError("bounds must ascend strictly and end with +Inf")
        if any(c < 0 for c in self.counts):
            raise ValueError("bucket counts cannot be negative")

    @property
    def total(self) -> int:
        return sum(self.counts)

    @classmethod
    def from_cumulative(cls, cumulative: Mapping[float, float]) -> Buckets:
        """From Prometheus ``le`` -> cumulative count (what ``*_bucket`` series hold)."""
        bounds = tuple(sorted(cumulative))
        if not bounds or bounds[-1] != math.inf:
            raise ValueError('a histogram needs its le="+Inf" bucket')
        counts: list[int] = []
        previous = 0
        for bound in bounds:
            value = round(cumulative[bound])
            # Cumulative counts never decrease with le; clamp float noise from sums of series.
            counts.append(max(0, value - previous))
            previous = max(previous, value)
        return cls(bounds, tuple(counts))


def counter_delta(previous: float | None, current: float) -> float:
    """Increase of a counter between two reads; a decrease means the process restarted."""
    if previous is None or current < previous:
        return current
    return current - previous


def bucket_values(buckets: Buckets) -> npt.NDArray[np.float64]:
    """One value per counted request at its bucket's upper bound (last finite bound for +Inf)."""
    finite = [b for b in buckets.bounds if math.isfinite(b)]
    cap = finite[-1] if finite else 0.0
    values = [b if math.isfinite(b) else cap for b in buckets.bounds]
    return np.repeat(np.array(values, dtype=np.float64), np.array(buckets.counts, dtype=np.int64))


def pseudo_latencies(buckets: Buckets, n: int) -> npt.NDArray[np.float64]:
    """``n`` latencies (ms, ascending) with the distribution of the bucket upper bounds.

    Exact repetition when the histogram counted ``n`` requests; otherwise the i-th of ``n`` values
    is the bucket value at quantile ``(i + 0.5) / n`` (nearest rank).
    """
    values = bucket_values(buckets)
    if n <= 0:
        return np.empty(0, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no latency observations to spread over requests")
    if values.size == n:
        return values
    index = np.minimum(((np.arange(n) + 0.5) * values.size / n).astype(np.int64), values.size - 1)
    return values[index]


def stride_order(n: int) -> npt.NDArray[np.int64]:
    """A fixed permutation of ``range(n)`` that spreads neighbours apart (golden-ratio stride)."""
    if n <= 2:
        return np.arange(n, dtype=np.int64)
    step = max(1, round(n * 0.6180339887))
    while math.gcd(step, n) != 1:
        step += 1
    return (np.arange(n, dtype=np.int64) * step) % n


def spread_statuses(status_counts: Mapping[int, int], n: int) -> npt.NDArray[np.int32]:
    """``n`` status codes with the given counts, each code's rows spread evenly over the window."""
    total = sum(status_counts.values())
    if total != n:
        raise ValueError(f"status counts sum to {total}, expected {n}")
    statuses = np.zeros(n, dtype=np.int32)
    filled = np.zeros(n, dtype=np.bool_)
    # Rare codes first, each at evenly spaced free positions; the commonest code fills the rest.
    for code, count in sorted(status_counts.items(), key=lambda kv: (kv[1], kv[0])):
        if count <= 0:
            continue
        free = np.flatnonzero(~filled)
        picks = free[
            np.minimum(
                ((np.arange(count) + 0.5) * free.size / count).astype(np.int64), free.size - 1
            )
        ]
        statuses[picks] = code
        filled[picks] = True
    return statuses


@dataclass(frozen=True)
class ArmWindow:
    """What one arm served during one window, read from counters and a histogram."""

    arm: str  # "baseline" | "candidate"
    status_counts: Mapping[int, int]
    latency: Buckets | None  # None when the histogram had no series

    @property
    def requests(self) -> int:
        return sum(self.status_counts.values())

    @property
    def errors(self) -> int:
        """Errors by meshlab's one rule with no expected statuses (4xx count; the comparison
        itself applies ``analysis.expectedStatuses`` to the pseudo-samples' status codes)."""
        return sum(c for code, c in self.status_counts.items() if is_error_status(code))


def window_columns(
    window: ArmWindow, start: float, end: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.int32]]:
    """(timestamps, latencies, statuses) of the pseudo-samples of one arm in ``(start, end]``."""
    n = window.requests
    if n == 0:
        empty = np.empty(0, dtype=np.float64)
        return empty, empty, np.empty(0, dtype=np.int32)
    if window.latency is None or window.latency.total == 0:
        raise ValueError(f"{window.arm}: {n} requests counted but no latency observations")
    latencies = pseudo_latencies(window.latency, n)[stride_order(n)]
    statuses = spread_statuses(window.status_counts, n)
    timestamps = start + (np.arange(n, dtype=np.float64) + 0.5) * ((end - start) / n)
    return timestamps, latencies, statuses


def median_resolution(buckets: Buckets) -> tuple[float, float] | None:
    """The (lower, upper) bounds of the bucket holding the median, or None without data."""
    total = buckets.total
    if total == 0:
        return None
    running = 0
    lower = 0.0
    for bound, count in zip(buckets.bounds, buckets.counts, strict=True):
        running += count
        if running * 2 >= total:
            return lower, bound
        lower = bound
    return lower, buckets.bounds[-1]


def describe(windows: Sequence[ArmWindow]) -> str:
    """The approximation statement for a report: method, per-arm median bucket, censored counts."""
    parts = [APPROXIMATION]
    for window in windows:
        if window.latency is None or window.latency.total == 0:
            parts.append(f"{window.arm}: no latency observations")
            continue
        low, high = median_resolution(window.latency) or (0.0, 0.0)
        finite = [b for b in window.latency.bounds if math.isfinite(b)]
        above = window.latency.counts[-1]
        text = f"{window.arm}: median in bucket ({low:g}, {high:g}] ms"
        if math.isfinite(high) and low > 0:
            text += f" (resolution {100 * (high - low) / low:.0f}% of its lower bound)"
        if above and finite:
            text += f", {above} request(s) above {finite[-1]:g} ms placed at it"
        parts.append(text)
    return "; ".join(parts)
