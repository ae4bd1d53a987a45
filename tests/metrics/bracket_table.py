"""Measurement (not a test): latency verdicts on raw samples vs bucket pseudo-samples.

Run: ``python -m tests.metrics.bracket_table [seed] [bucket ratio]``. Same simulated requests per
row (lognormal latencies, sigma 0.3, 3000 per arm, all 200), judged by the stats engine with a
latency-p50 tolerance of 10% four ways: raw latencies; pseudo-samples at the upper bounds of
Istio's/Envoy's default buckets with the plain Comparison; the same with BracketedComparison; and
BracketedComparison on geometric buckets of the given ratio (default 1.02).
"""

from __future__ import annotations

import math
import sys

import numpy as np

from meshlab.metrics import DEFAULT_BUCKETS_MS, BracketedComparison, geometric_buckets
from meshlab.samples import Samples
from meshlab.spec.analysis import Analysis, Metric
from meshlab.stats.comparison import Comparison
from tests.metrics.test_bracket import N, pseudo_samples

ANALYSIS = Analysis(
    metrics=[Metric(name="latency-p50", type="latency", quantile=0.5, tolerance=0.10)]
)
SCENARIOS = (
    (30, 30),
    (30, 32),
    (30, 36),
    (30, 45),
    (40, 44),
    (40, 60),
    (20, 23),
    (8, 12),
    (150, 180),
)


def raw_samples(medians: tuple[float, float], seed: int) -> Samples:
    rng = np.random.default_rng(seed)
    lat = np.concatenate([rng.lognormal(math.log(m), 0.3, N) for m in medians])
    arm = np.repeat(np.array([0, 1], dtype=np.int8), N)
    ts = np.tile(np.linspace(0.0, 60.0, N), 2)
    order = np.argsort(ts, kind="stable")
    return Samples(
        ts[order], arm[order], np.array([str(i) for i in range(2 * N)]), lat[order],
        np.full(2 * N, 200, dtype=np.int32), np.full(2 * N, None, dtype=object),
        np.zeros(2 * N, dtype=np.bool_),
    )  # fmt: skip


def judge(comparison: Comparison | BracketedComparison, samples: Samples) -> str:
    comparison.update(samples)
    assessment = comparison.assess()
    return f"{assessment.verdict.outcome} ({assessment.metrics[0].estimate:+.2f})"


def main() -> None:
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    ratio = float(sys.argv[2]) if len(sys.argv) > 2 else 1.02
    fine = tuple(geometric_buckets(0.5, 60000, ratio))
    print(
        f"| p50 ms (base, cand) | raw | default buckets, plain | default buckets, bracketed "
        f"| {100 * (ratio - 1):.0f}% buckets, bracketed |"
    )
    print("|---|---|---|---|---|")
    for medians in SCENARIOS:
        coarse = pseudo_samples(medians, DEFAULT_BUCKETS_MS, seed)
        print(
            f"| {medians} | {judge(Comparison(ANALYSIS), raw_samples(medians, seed))} "
            f"| {judge(Comparison(ANALYSIS), coarse)} "
            f"| {judge(BracketedComparison(ANALYSIS, bounds=DEFAULT_BUCKETS_MS), coarse)} "
            f"| {judge(BracketedComparison(ANALYSIS, bounds=fine), pseudo_samples(medians, fine, seed))} |"
        )


if __name__ == "__main__":
    main()
