"""Benchmark of meshlab's start-up, before and after lazy imports (issue 11), side by side.

Run: ``python benchmarks/startup_bench.py [--before 440f491] [--repeat 9]``. The ``--before``
revision is exported with ``git archive`` into a temporary directory (default: the last commit
before the lazy imports); the ``--after`` tree is this checkout. For each tree, interleaved run by
run so both see the same load on a shared machine, it measures:

- the wall time of ``python -m meshlab --help`` and of ``meshlab validate`` (median of the runs);
- ``python -X importtime``: the total time spent importing, summed over the top-level imports of
  the same command (median), and whether matplotlib, scipy, numpy or kubernetes were imported.

It prints a table with the after/before ratios (speed-ups as before/after).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPEC = "examples/canary.yaml"
COMMANDS = {"--help": ["--help"], "validate": ["validate", "-f", SPEC]}
HEAVY = ("matplotlib", "scipy", "numpy", "kubernetes")


def export(revision: str, into: Path) -> Path:
    """The tree of ``revision`` as plain files (nothing of this checkout's state)."""
    archive = into / "tree.tar"
    with archive.open("wb") as fh:
        subprocess.run(["git", "archive", revision], cwd=REPO, stdout=fh, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "100"}


def wall(tree: Path, args: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "meshlab", *args],
        cwd=tree,
        env=_env(tree),
        capture_output=True,
        check=True,
    )
    return time.perf_counter() - began


def import_time(tree: Path, args: list[str]) -> tuple[float, set[str]]:
    """Seconds of import (sum of the top-level imports' cumulative times) and heavy modules seen."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "meshlab", *args],
        cwd=tree,
        env=_env(tree),
        capture_output=True,
        text=True,
        check=True,
    )
    total, heavy = 0, set()
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part for part in line.split("|"))
        module = name.rstrip()
        if module.strip().split(".")[0] in HEAVY:
            heavy.add(module.strip().split(".")[0])
        if not module.startswith("  "):  # top level: its cumulative time includes its children
            total += int(cumulative)
    return total / 1e6, heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="440f491", help="git revision before the change")
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meshlab-startup-") as tmp:
        trees = {"before": export(args.before, Path(tmp)), "after": REPO}
        walls: dict[tuple[str, str], list[float]] = {}
        imports: dict[tuple[str, str], list[float]] = {}
        heavy: dict[tuple[str, str], set[str]] = {}
        for tree in trees.values():  # warm the file cache and the .pyc files once
            for cmd in COMMANDS.values():
                wall(tree, cmd)
        for _ in range(args.repeat):
            for command, cmd in COMMANDS.items():
                for label, tree in trees.items():
                    key = (command, label)
                    walls.setdefault(key, []).append(wall(tree, cmd))
                    seconds, seen = import_time(tree, cmd)
                    imports.setdefault(key, []).append(seconds)
                    heavy[key] = heavy.get(key, set()) | seen
    print(f"median of {args.repeat} runs each, interleaved; before = {args.before}, after = HEAD")
    print(
        f"{'command':<10} {'measure':<16} {'before':>9} {'after':>9} {'speed-up':>9}  heavy imports"
    )
    for command in COMMANDS:
        for measure, data in (("wall time", walls), ("import time", imports)):
            before = statistics.median(data[(command, "before")])
            after = statistics.median(data[(command, "after")])
            seen = (
                f"before: {','.join(sorted(heavy[(command, 'before')])) or '-'}; "
                f"after: {','.join(sorted(heavy[(command, 'after')])) or '-'}"
                if measure == "import time"
                else ""
            )
            print(
                f"{command:<10} {measure:<16} {before:>8.3f}s {after:>8.3f}s "
                f"{before / after:>8.1f}x  {seen}"
            )


if __name__ == "__main__":
    main()
