"""Benchmark of ``meshlab analyze --replay`` against one look, end to end through the CLI (issue 14).

Run: ``python benchmarks/replay_bench.py [--n 1000000] [--repeat 5]``. Writes samples files of
``--n`` rows to a temporary directory and times, in fresh processes (``python -m meshlab``), one
look over the whole file (``meshlab analyze``) and a look every 50 rows (``--replay --every 50``:
20,000 looks on 1,000,000 rows), on a stream no look decides (every look is judged) and on an A/A
stream (decides early). The two commands alternate within each round, so load from other
processes hits both alike; each time is the median over rounds. Target: replay / one look <= 3.

The samples reader is timed the same way, in this process: rows per second of
:func:`meshlab.samples.read_samples` (column-wise) against the row-by-row validator it replaced
(``Samples.from_rows(list(iter_samples(...)))``, run on the first ``--old-rows`` rows, as it takes
~15-30 s for a million).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stats_bench import SPEC, canary, undecided, write_csv

from meshlab.samples import Samples, iter_samples, read_samples

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> Callable[[], None]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run() -> None:
        out = subprocess.run(
            [sys.executable, "-m", "meshlab", "analyze", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if out.returncode not in (0, 1, 3):
            raise SystemExit(
                f"meshlab analyze {' '.join(args)}: exit {out.returncode}\n{out.stderr}"
            )

    return run


def interleaved(a: Callable[[], None], b: Callable[[], None], rounds: int) -> tuple[float, float]:
    """Median seconds of ``a`` and of ``b``, run alternately (a b, b a, a b, ...)."""
    times: dict[int, list[float]] = {0: [], 1: []}
    for r in range(rounds):
        for which in (0, 1) if r % 2 == 0 else (1, 0):
            fn = (a, b)[which]
            t0 = time.perf_counter()
            fn()
            times[which].append(time.perf_counter() - t0)
    return statistics.median(times[0]), statistics.median(times[1])


def new_reader(path: Path) -> Callable[[], None]:
    def run() -> None:
        read_samples(path)

    return run


def old_reader(path: Path, rows: int) -> Callable[[], None]:
    with path.open(newline="", encoding="utf-8") as fh:
        head = "".join(fh.readline() for _ in range(rows + 1))

    def run() -> None:
        Samples.from_rows(list(iter_samples(io.StringIO(head, newline=""), str(path))))

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--old-rows", type=int, default=100_000)
    args = parser.parse_args()
    rng = np.random.default_rng(2)
    print(f"{args.n:,} rows, --every 50 ({-(-args.n // 50):,} looks), median of {args.repeat}")
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "experiment.yaml"
        spec.write_text(SPEC)
        files = []
        for label, data in (
            ("never decides", undecided(args.n, rng)),
            ("A/A", canary(args.n, rng)),
        ):
            path = Path(tmp) / f"{label.split()[0].replace('/', '')}.csv"
            write_csv(path, data)
            files.append((label, path))
        path = files[0][1]
        new, old = interleaved(new_reader(path), old_reader(path, args.old_rows), args.repeat)
        print(
            f"  reader: column-wise {args.n / new / 1e6:.2f} M rows/s ({new:.2f} s for {args.n:,}),"
            f" row by row {args.old_rows / old / 1e6:.3f} M rows/s "
            f"({old:.2f} s for {args.old_rows:,}): x{(args.n / new) / (args.old_rows / old):.1f}"
        )
        for label, path in files:
            once, every = interleaved(
                cli(str(path), "-f", str(spec)),
                cli(str(path), "-f", str(spec), "--replay", "--every", "50"),
                args.repeat,
            )
            print(
                f"  meshlab analyze, {label}: one look {once:6.2f} s, --replay --every 50 "
                f"{every:6.2f} s, ratio x{every / once:4.2f} (target <= 3)"
            )


if __name__ == "__main__":
    main()
