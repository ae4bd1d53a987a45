"""Benchmark of meshlab.stats: 1,000,000 samples analysed, whole, streamed and replayed, side by side.

Run: ``nice -n 10 python benchmarks/stats_bench.py [--n 1000000]``. Prints wall-clock seconds per
scenario (best of ``--repeat``) and each one's ratio to the one-shot sequential analysis. Numbers
taken on a shared machine are noisy; compare ratios within one run.

The replay section (issue 14) times ``meshlab analyze`` end to end on a samples file written
to a temporary directory: one look over the whole file, against ``--replay --every 50`` (20,000
looks on 1,000,000 rows), both reading the same file, on a stream that never decides (so every
look is judged) and on one that does. Target: replay / one look <= 3.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from meshlab.samples import COLUMNS, Samples
from meshlab.spec.analysis import Analysis, Metric
from meshlab.stats import Comparison

METRICS = [
    Metric(name="latency-p50", type="latency", quantile=0.5, tolerance=0.10),
    Metric(name="latency-p99", type="latency", quantile=0.99, tolerance=0.20),
    Metric(name="errors", type="error-rate", tolerance=0.005),
    Metric(name="divergence", type="prediction-divergence", tolerance=0.02),
]
REPLAY_METRICS = [  # the metrics of SPEC below
    Metric(name="latency-p50", type="latency", quantile=0.5, tolerance=0.10),
    Metric(name="errors", type="error-rate", tolerance=0.005),
    Metric(
        name="divergence",
        type="prediction-divergence",
        tolerance=0.05,
        abort_on="beyond-tolerance",
    ),
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


def one_shot(
    s: Samples,
    mode: str = "canary",
    method: str = "sequential",
    metrics: list[Metric] | None = None,
) -> Callable[[], None]:
    def run() -> None:
        c = Comparison(Analysis(metrics=metrics or METRICS, method=method), mode)  # type: ignore[arg-type]
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


def undecided(n: int, rng: np.random.Generator) -> Samples:
    """A canary stream no look decides: divergence exactly at its tolerance, abortOn beyond it."""
    arm = (rng.random(n) < 0.5).astype(np.int8)
    labels = np.array(["legit", "review", "fraud"], dtype=object)
    base, cand = [0.7, 0.2, 0.1], [0.65, 0.25, 0.1]
    u = rng.random(n)
    code = np.where(
        arm == 1,
        (u[:, None] > np.cumsum(cand)[None, :-1]).sum(1),
        (u[:, None] > np.cumsum(base)[None, :-1]).sum(1),
    )
    return Samples(
        timestamp=np.asarray(1.7e9 + np.arange(n) * 1e-3, dtype=np.float64),
        arm=arm,
        request_id=np.array([f"r{i}" for i in range(n)]),
        latency_ms=np.asarray(np.round(np.exp(rng.normal(3.0, 0.5, n)), 3), dtype=np.float64),
        status=np.where(rng.random(n) < 0.01, 503, 200).astype(np.int32),
        prediction=labels[code],
        mirrored=np.zeros(n, dtype=bool),
    )


SPEC = """apiVersion: meshlab.io/v1alpha1
kind: Experiment
metadata: {name: bench, namespace: models}
spec:
  strategy: canary
  service: {host: model, port: 8080}
  baseline: {subset: v1, labels: {version: v1}}
  candidate: {subset: v2, labels: {version: v2}}
  canary: {steps: [50]}
  analysis:
    metrics:
      - {name: latency-p50, type: latency, quantile: 0.5, tolerance: "10%"}
      - {name: errors, type: error-rate, tolerance: "0.5%"}
      - {name: divergence, type: prediction-divergence, tolerance: "5%", abortOn: beyond-tolerance}
"""


def cli(args: list[str]) -> Callable[[], None]:
    from meshlab.cli import main

    def run() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(args)
        if code not in (0, 1, 3):
            raise SystemExit(f"meshlab {' '.join(args)} failed with exit code {code}")

    return run


def write_csv(path: Path, s: Samples) -> None:
    """The samples file of ``s`` (the format ``meshlab analyze`` reads)."""
    arms = np.array(["baseline", "candidate"])[s.arm]
    preds = [json.dumps(p) if p is not None else "" for p in s.prediction.tolist()]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(COLUMNS)
        w.writerows(
            zip(
                s.timestamp.tolist(),
                arms.tolist(),
                s.request_id.tolist(),
                np.char.mod("%.3f", s.latency_ms).tolist(),
                s.status.tolist(),
                preds,
                s.mirrored.astype(int).tolist(),
                strict=True,
            )
        )


def replay_in_memory(s: Samples, every: int) -> Callable[[], None]:
    from meshlab.stats.replay import replay

    analysis = Analysis(metrics=REPLAY_METRICS)

    def run() -> None:
        replay(lambda: Comparison(analysis), s, every)

    return run


def replay_cases(n: int, repeat: int) -> None:
    rng = np.random.default_rng(2)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "experiment.yaml"
        spec.write_text(SPEC)
        for label, data in (("never decides", undecided(n, rng)), ("A/A, decides", canary(n, rng))):
            path = Path(tmp) / "samples.csv"
            write_csv(path, data)
            once = best(cli(["analyze", str(path), "-f", str(spec)]), repeat)
            every = best(
                cli(["analyze", str(path), "-f", str(spec), "--replay", "--every", "50"]), repeat
            )
            print(
                f"  meshlab analyze, {label}: one look {once:6.2f} s, --replay --every 50 "
                f"({n // 50:,} looks) {every:6.2f} s, ratio x{every / once:4.2f} (target <= 3)"
            )
            once = best(one_shot(data, metrics=REPLAY_METRICS), repeat)
            every = best(replay_in_memory(data, 50), repeat)
            print(
                f"    in memory (no file reading): one look {once:6.2f} s, replay {every:6.2f} s, "
                f"ratio x{every / once:4.2f}"
            )


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
    parser.add_argument("--replay-only", action="store_true", help="only the replay ratio")
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
    if args.replay_only:
        replay_cases(args.n, args.repeat)
        return
    reference = None
    for name, fn in cases:
        seconds = best(fn, args.repeat)
        reference = reference or seconds
        print(
            f"  {name:<60} {seconds:7.3f} s  x{seconds / reference:5.2f}  "
            f"{args.n / seconds / 1e6:5.2f} M samples/s"
        )
    replay_cases(args.n, args.repeat)


if __name__ == "__main__":
    main()
