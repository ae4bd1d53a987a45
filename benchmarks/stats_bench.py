"""Benchmark of meshlab.stats: 1,000,000 samples analysed, whole and streamed, side by side.

Run: ``python benchmarks/stats_bench.py [--n 1000000]``. Prints wall-clock seconds per scenario
(best of ``--repeat``) and each one's ratio to the one-shot sequential analysis. Numbers taken on a
shared machine are noisy; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from meshlab.samples import Samples
from meshlab.spec.analysis import Analysis, Metric
from meshlab.stats import Comparison

METRICS = [
    Metric(name="latency-p50", type="latency", quantile=0.5, tolerance=0.10),
    Metric(name="latency-p99", type="latency", quantile=0.99, tolerance=0.20),
    Metric(name="errors", type="error-rate", tolerance=0.005),
    Metric(name="divergence", type="prediction-divergence", tolerance=0.02),
]


def canary(n: int, rng: np.random.Generator) -> Samples:
    arm = (rng.random(n) < 0.5).astype(np.int8)
    labels = np.array(["legit", "review", "fraud"], dtype=object)
    return Samples(
        timestamp=np.asarray(1.7e9 + np.arange(n) * 1e-3, dtype=np.float64),
        arm=arm,
        request_id=np.array([f"r{i}" for i in range(n)]),
        latency_ms=np.asarray(np.round(np.exp(rng.normal(3.0, 0.5, n)), 3), dtype=np.float64),
        status=np.where(rng.random(n) < 0.01, 503, 200).astype(np.int32),
        prediction=labels[rng.integers(0, 3, n)],
        mirrored=np.zeros(n, dtype=bool),
    )


def shadow(n: int, rng: np.random.Generator) -> Samples:
    pairs = n // 2
    ids = np.array([f"r{i}" for i in range(pairs)])
    base = np.round(np.exp(rng.normal(3.0, 0.5, pairs)), 3)
    pred = rng.random(pairs)
    return Samples(
        timestamp=1.7e9 + np.repeat(np.arange(pairs) * 1e-3, 2),
        arm=np.tile(np.array([0, 1], dtype=np.int8), pairs),
        request_id=np.repeat(ids, 2),
        latency_ms=np.repeat(base, 2),
        status=np.full(2 * pairs, 200, dtype=np.int32),
        prediction=np.repeat(pred, 2).astype(object),
        mirrored=np.tile(np.array([False, True]), pairs),
    )


def one_shot(s: Samples, mode: str = "canary", method: str = "sequential") -> Callable[[], None]:
    def run() -> None:
        c = Comparison(Analysis(metrics=METRICS, method=method), mode)  # type: ignore[arg-type]
        c.update(s)
        c.assess()

    return run


def streamed(s: Samples, batch: int) -> Callable[[], None]:
    parts = [s.take(slice(i, i + batch)) for i in range(0, len(s), batch)]

    def run() -> None:
        c = Comparison(Analysis(metrics=METRICS))
        for part in parts:
            c.update(part)
            c.assess()

    return run


def best(fn: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    data, pairs = canary(args.n, rng), shadow(args.n, rng)
    cases = [
        ("canary, one update + one look (sequential)", one_shot(data)),
        ("canary, batches of 10,000, a look after each (100 looks)", streamed(data, 10_000)),
        ("canary, batches of 1,000, a look after each (1,000 looks)", streamed(data, 1_000)),
        ("shadow, 500,000 pairs, one update + one look", one_shot(pairs, "shadow")),
        ("canary, fixed-horizon Mann-Whitney/HL, one look", one_shot(data, method="fixed-horizon")),
    ]
    print(f"{args.n:,} samples, {len(METRICS)} metrics, best of {args.repeat}")
    reference = None
    for name, fn in cases:
        seconds = best(fn, args.repeat)
        reference = reference or seconds
        print(
            f"  {name:<60} {seconds:7.3f} s  x{seconds / reference:5.2f}  "
            f"{args.n / seconds / 1e6:5.2f} M samples/s"
        )


if __name__ == "__main__":
    main()
