"""Histogram bucket bounds fine enough for latency comparisons from bucketed telemetry.

Prometheus keeps only bucket counts, so a latency quantile is known only to within one bucket. A
bracketed comparison (:mod:`meshlab.metrics.bracket`) can promote only when buckets are narrower
than the metric's tolerance: geometric buckets ``ratio - 1`` wide (2% by default) are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

FINE_RATIO = 1.02


def geometric_buckets(low_ms: float, high_ms: float, ratio: float) -> list[float]:
    """Bucket bounds ``low, low*ratio, ...`` up to ``high``: each bucket ``ratio - 1`` wide."""
    if not (0 < low_ms < high_ms) or ratio <= 1:
        raise ValueError("need 0 < low_ms < high_ms and ratio > 1")
    steps = math.ceil(math.log(high_ms / low_ms) / math.log(ratio))
    return [float(f"{low_ms * ratio**i:.4g}") for i in range(steps + 1)]


def fine_latency_buckets() -> list[float]:
    """0.5 ms to 60 s in 2% steps: the buckets meshlab gives the local mesh's Envoys."""
    return geometric_buckets(0.5, 60_000.0, FINE_RATIO)


def envoy_bucket_settings(bounds: Sequence[float], prefix: str = "cluster.") -> dict[str, object]:
    """Envoy bootstrap ``stats_config`` giving histograms under ``prefix`` these buckets (ms)."""
    return {
        "histogram_bucket_settings": [
            {"match": {"prefix": prefix}, "buckets": [float(b) for b in bounds]}
        ]
    }
