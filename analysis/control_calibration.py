"""Calibration of the control arm (issue 13): unequal load, cold starts and divergence floors.

Simulates whole sequential experiments with :func:`meshlab.stats.simulate.simulate`, which judges
every look exactly as ``meshlab.stats.Comparison`` does (with ``control=True`` when the scenario
has a control arm). Three biases of real servers, each against its stated null and its
at-tolerance alternative:

* **load**: an arm's median latency is x ``1 + share`` of its traffic share (canary step 25%:
  production at 75% is 1.75x, candidate and control at 25% are 1.25x; the candidate reads ~29%
  "faster", as the issue measured on MLServer at 25%, -45%);
* **cold start**: a fresh arm (the candidate, and the control) is x ``1 + 0.5 exp(-age/1000)``
  slower, age counted in the arm's own requests;
* **floor**: every copy of the model disagrees with production on 0.1%, 0.5% or 1% of the
  requests (nondeterministic inference), shadow mode, divergence tolerance 2%.

Per scenario: the wrong decision's rate (false abort on nulls, false promote at the tolerance)
with a 95% Clopper-Pearson interval against alpha or beta, the abort/promote/undecided rates, and
the median requests to a decision. Canary scenarios judge latency p50 (tolerance 10%) and error
rate (1%, base 0.1%); shadow scenarios judge latency, errors and divergence; error budget
alpha = beta = 5%, Bonferroni over the metrics on the abort side. The horizon is 4x the one-look
size of the design (:func:`meshlab.stats.simulate.one_look_size`); an undecided run counts as
neither error. Method: beta-binomial and quantile mixture confidence sequences (Howard, Ramdas,
McAuliffe & Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence sequences", Annals of
Statistics 2021); the control follows Kayenta's fresh same-size baseline.

Usage: ``nice -n 10 python analysis/control_calibration.py [--reps N]``; writes
``control_calibration.csv`` and ``.md`` beside this file.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from calibration import clopper_pearson  # the sibling script's interval

from meshlab.stats.simulate import (
    Effect,
    Setup,
    SimMetric,
    World,
    one_look_size,
    simulate,
    summarize,
)

HERE = Path(__file__).resolve().parent
ALPHA, BETA = 0.05, 0.05
LAT_TOL, ERR_TOL, SHADOW_DIV_TOL = 0.10, 0.01, 0.02
CANARY = (SimMetric("latency", LAT_TOL), SimMetric("error-rate", ERR_TOL))
SHADOW_NEW = (*CANARY, SimMetric("prediction-divergence", SHADOW_DIV_TOL, abort_beyond=True))
SHADOW_OLD = (*CANARY, SimMetric("prediction-divergence", SHADOW_DIV_TOL, abort_beyond=False))
LOAD = World(error_rate=0.001, load_slope=1.0)
COLD = World(error_rate=0.001, cold_start=0.5, cold_tau=1000.0)


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # "null" (false abort is the error) or "tolerance" (false promote is)
    control: bool
    world: World
    metrics: tuple[SimMetric, ...] = CANARY
    effect: Effect = field(default_factory=Effect)
    mode: str = "canary"
    weight: float = 0.25
    contract: str = "default"

    def setup(self) -> Setup:
        every = 500 if self.mode == "canary" else 100
        base = Setup(
            self.metrics,
            ALPHA,
            BETA,
            self.mode,
            ((math.inf, self.weight),),
            every,
            0,
            self.world,
            self.effect,
            control=self.control,
        )
        share = ALPHA / len(self.metrics)
        n1 = max(
            one_look_size(m, share, BETA, self.weight, self.mode, self.world, self.control)
            for m in self.metrics
        )
        return replace(base, horizon=int(math.ceil(4 * n1 / every) * every))


def scenarios() -> list[Scenario]:
    out: list[Scenario] = []
    slower = Effect(latency_ratio=1 + LAT_TOL)
    for control in (False, True):
        tag = "control" if control else "no control"
        out += [
            Scenario(f"load 25%, A/A, {tag}", "null", control, LOAD),
            Scenario(f"load 25%, latency +10%, {tag}", "tolerance", control, LOAD, effect=slower),
            Scenario(f"cold start, A/A, {tag}", "null", control, COLD),
            Scenario(f"cold start, latency +10%, {tag}", "tolerance", control, COLD, effect=slower),
        ]
    for floor in (0.001, 0.005, 0.01):
        world = World(floor=floor)
        pct = f"{100 * floor:g}%"
        out += [
            Scenario(
                f"floor {pct}, A/A, no control, abortOn worse (old default)",
                "null",
                False,
                world,
                SHADOW_OLD,
                mode="shadow",
                contract="worse",
            ),
            Scenario(
                f"floor {pct}, A/A, no control (new default)",
                "null",
                False,
                world,
                SHADOW_NEW,
                mode="shadow",
            ),
            Scenario(
                f"floor {pct}, +2% above floor, no control (new default)",
                "tolerance",
                False,
                world,
                SHADOW_NEW,
                Effect(divergence=SHADOW_DIV_TOL),
                mode="shadow",
            ),
            Scenario(
                f"floor {pct}, A/A, control, abortOn worse",
                "null",
                True,
                world,
                SHADOW_OLD,
                mode="shadow",
                contract="worse",
            ),
            Scenario(
                f"floor {pct}, +2% above floor, control, abortOn worse",
                "tolerance",
                True,
                world,
                SHADOW_OLD,
                Effect(divergence=SHADOW_DIV_TOL),
                mode="shadow",
                contract="worse",
            ),
        ]
    return out


def run(sc: Scenario, reps: int, seed: int) -> dict[str, object]:
    setup = sc.setup()
    out = simulate(setup, reps, np.random.default_rng(seed))
    q = summarize(out)
    wrong = out.abort if sc.kind == "null" else out.promote
    k = int(wrong.sum())
    lo, hi = clopper_pearson(k, reps)
    bound = ALPHA if sc.kind == "null" else BETA
    return {
        "scenario": sc.name,
        "error": "false abort" if sc.kind == "null" else "false promote",
        "rate": k / reps,
        "ci_low": lo,
        "ci_high": hi,
        "bound": bound,
        "holds": "yes" if lo <= bound else "NO",
        "abort": q["abort"],
        "promote": q["promote"],
        "undecided": q["undecided"],
        "median_n": q["median"],
        "horizon": setup.horizon,
        "reps": reps,
    }


def write(rows: list[dict[str, object]], reps: int, seconds: float) -> None:
    with (HERE / "control_calibration.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [
        "# Control-arm calibration (issue 13)",
        "",
        f"{reps} simulated experiments per row, alpha = beta = 5%, 95% Clopper-Pearson intervals; "
        f"generated by `analysis/control_calibration.py` in {seconds:.0f} s. 'holds' = the "
        "interval's lower end is at or below the bound (NO = the guarantee is broken).",
        "",
        "| scenario | error | rate [95% CI] | bound | holds | abort | promote | undecided |"
        " median n | horizon |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['error']} | {r['rate']:.3f} "
            f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}] | {r['bound']:.2f} | {r['holds']} | "
            f"{r['abort']:.3f} | {r['promote']:.3f} | {r['undecided']:.3f} | "
            f"{r['median_n']:.0f} | {r['horizon']} |"
        )
    (HERE / "control_calibration.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=400)
    ap.add_argument("--only", default="", help="run only scenarios whose name contains this")
    args = ap.parse_args()
    start = time.monotonic()
    rows = []
    for i, sc in enumerate(scenarios()):
        if args.only not in sc.name:
            continue
        t = time.monotonic()
        rows.append(run(sc, args.reps, seed=1000 + i))
        print(f"{time.monotonic() - t:6.1f}s  {rows[-1]}", flush=True)
    write(rows, args.reps, time.monotonic() - start)


if __name__ == "__main__":
    main()
