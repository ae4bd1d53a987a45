"""Issue 11's reproduction, many times: ``kill -INT PID; kill -INT PID`` at a random instant.

Not part of CI (50 runs take ~15 minutes). Each run starts ``meshlab canary start`` on the real local
mesh, waits for a random phase (start-up, step 1 or its analysis looks) and a random instant in
it, sends two SIGINTs back to back, and checks everything issue 11 promises (see tests/experiment/storm.py). Prints one
line per run and the count of clean runs.

    python scripts/double_signal_repro.py --runs 50
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.experiment.storm import PHASES, Shot, run_storm  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--before",
        metavar="REV",
        help="run this git revision instead (e.g. 440f491, before issue 11) to measure 'before'",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meshlab-tree-") as trees:
        tree = REPO
        if args.before:
            tree = Path(trees) / "tree"
            tree.mkdir()
            archive = subprocess.run(
                ["git", "archive", args.before], cwd=REPO, capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        return repeat(args.runs, args.seed, tree)


def repeat(runs: int, seed: int, tree: Path) -> int:
    """Run the reproduction ``runs`` times; 0 if every run was clean."""
    rng = random.Random(seed)
    clean = 0
    began = time.monotonic()
    for i in range(runs):
        phase = rng.choice(PHASES[1:4])  # start-up, step, analysis
        shots = [Shot(signal.SIGINT, False, 0.0), Shot(signal.SIGINT, False, 0.0)]
        with tempfile.TemporaryDirectory(prefix="meshlab-repro-") as tmp:
            result = run_storm(Path(tmp), phase, rng.randrange(1_000_000), shots=shots, tree=tree)
        clean += result.clean
        verdict = "clean" if result.clean else f"PROBLEMS: {result.problems}"
        print(
            f"run {i + 1:2d} {phase:9s} exit {result.code} in {result.seconds:5.1f}s: {verdict}",
            flush=True,
        )
    print(f"clean: {clean}/{runs} in {time.monotonic() - began:.0f}s")
    return 0 if clean == runs else 1


if __name__ == "__main__":
    sys.exit(main())
