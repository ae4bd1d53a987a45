"""Benchmark of ``meshlab plan`` (issue 14: under 10 s on ``examples/fraud-v2.yaml``), side by side.

Run: ``nice -n 10 python benchmarks/plan_bench.py [--repeat 3]``. Times, best of ``--repeat``, in
one process: the whole ``meshlab plan -f examples/fraud-v2.yaml`` (4 analysed canary steps, 3
metrics, 40 runs per estimate) and, as the unit of work, one joint A/A simulation of its first
(5%) step as the calibration would run it (40 runs, every look to the horizon, no early stop).
Prints wall and CPU seconds and the plan's cost in units of that one simulation. On a shared
machine the wall time depends on the other load; the CPU time and the ratio less so.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from meshlab.cli import main as cli
from meshlab.spec import load_experiment
from meshlab.stats.planning import StepTraffic, sim_metric, step_setup
from meshlab.stats.simulate import World, simulate

SPEC = Path(__file__).resolve().parent.parent / "examples" / "fraud-v2.yaml"


def best(fn: Callable[[], None], repeat: int) -> tuple[float, float]:
    """(wall, cpu) seconds of the fastest of ``repeat`` runs."""
    runs = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    return min(runs)


def plan() -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli(["plan", "-f", str(SPEC)]) == 0


def one_simulation() -> None:
    spec = load_experiment(SPEC).spec
    metrics = tuple(sim_metric(m) for m in spec.analysis.metrics)
    step = StepTraffic("canary 5%", 0.05, "canary", True)
    setup = step_setup(
        metrics, spec.analysis.alpha / len(metrics), spec.analysis.beta, step, World()
    )
    simulate(setup, 40, np.random.default_rng(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    unit_wall, unit_cpu = best(one_simulation, args.repeat)
    wall, cpu = best(plan, args.repeat)
    print(f"one joint A/A simulation of the 5% step (40 runs, to the horizon): "
          f"{unit_wall:.2f} s wall, {unit_cpu:.2f} s CPU")  # fmt: skip
    print(f"meshlab plan -f examples/fraud-v2.yaml: {wall:.2f} s wall, {cpu:.2f} s CPU "
          f"(x{cpu / unit_cpu:.1f} the unit; target < 10 s)")  # fmt: skip


if __name__ == "__main__":
    main()
