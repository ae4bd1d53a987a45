"""How far the error-rate decisions are from what any sequential test could do (issue 14).

The calibration study (``calibration.py``) misses issue 14's targets where the error rate binds
(a 1% base rate, tolerance 1 point): errors at the tolerance (median 0.79 of the one-look size,
target 0.6), at 2.5x the tolerance (0.24, target 0.15) and the A/A canary at 5% weight (0.84,
target 0.6). This study separates the two reasons a decision can be slow, judging the error-rate
metric alone (its own one-look size as the yardstick, alpha/3 on the abort side as in the
three-metric experiment, beta on the promote side):

1. **Wald's floor.** No sequential test with these error rates can stop sooner *on average* than
   Wald's bound for the sequential probability ratio test between the truth and the closest
   hypothesis it must rule out (Wald & Wolfowitz, "Optimum character of the sequential
   probability ratio test", Ann. Math. Statist. 19 (1948)):

       E[N] >= ((1 - e2) log((1 - e2) / e1) + e2 log(e2 / (1 - e1))) / KL

   ``KL`` per request (``w_b KL(p_b || q_b) + w_c KL(p_c || q_c)``) from the true rates to the
   closest rates on the other side of the decision (found numerically), ``e1`` the error rate
   allowed *against* the truth's decision, ``e2`` the one allowed for it. The bound assumes both
   hypotheses simple (the base rate known), so it is optimistic for any test that must work for
   every base rate, as meshlab's must.
2. **The mixture's tuning.** The same scenarios simulated with the design size of the
   beta-binomial mixture (:mod:`meshlab.stats.design`) scaled by 1/4 ... 4: the best any single
   design size of the product of the two arms' mixtures reaches (the canary error rule until
   the paired bets, :mod:`meshlab.stats.bets`, replaced it at even splits; row "adopted").
3. **The joint experiment's tuning.** The calibration's own scenarios (three metrics judged
   together, ``calibration.py``) with every metric's design size scaled by 1/2 ... 2, to show
   whether the adopted design factor leaves time on the table where the targets are missed.

Usage: ``nice -n 10 python analysis/sequential_floor.py [--reps N]``; writes
``sequential_floor.csv`` and ``sequential_floor.md`` beside this file (about 2 minutes).
"""

from __future__ import annotations

import argparse
import csv
import math
from dataclasses import dataclass
from pathlib import Path

import calibration  # the sibling script: its scenarios and one-look yardstick
import numpy as np
from scipy import optimize

from meshlab.stats.simulate import (
    Effect,
    Levers,
    Setup,
    SimMetric,
    World,
    one_look_size,
    simulate,
    summarize,
)

HERE = Path(__file__).resolve().parent
ALPHA, BETA = calibration.ALPHA, calibration.BETA
ALPHA_SHARE = ALPHA / len(calibration.METRICS)  # a metric's abort side in the joint experiment
BASE, TOL = 0.01, 0.01
SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
LOOKS = 40  # looks per one-look size
JOINT_SCALES = (0.5, 0.7, 1.0, 1.4, 2.0)
JOINT = (
    "A/A canary 50%",
    "A/A canary 50% bursty",
    "A/A canary 5%",
    "errors at tolerance",
    "divergence at tolerance",
    "errors 2.5x tolerance",
)


@dataclass(frozen=True)
class Case:
    name: str
    weight: float
    delta: float  # true error-rate difference (0: A/A, the right decision is a promote)
    target: float


CASES = (
    Case("A/A canary 50%", 0.5, 0.0, 0.6),
    Case("A/A canary 5%", 0.05, 0.0, 0.6),
    Case("errors at tolerance", 0.5, TOL, 0.6),
    Case("errors 2.5x tolerance", 0.5, 2.5 * TOL, 0.15),
)


def kl(p: float, q: float) -> float:
    """KL divergence of Bernoulli(p) from Bernoulli(q), nats."""
    return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))


def closest_kl(case: Case) -> float:
    """Per-request KL from the truth to the nearest rates on the other side of the decision."""
    wb, wc = 1 - case.weight, case.weight
    pb, pc = BASE, BASE + case.delta
    gap = TOL if case.delta == 0 else 0.0  # A/A must rule out +tol; an effect must rule out 0

    def cost(qb: float) -> float:
        return wb * kl(pb, qb) + wc * kl(pc, qb + gap)

    res = optimize.minimize_scalar(cost, bounds=(1e-6, 1 - gap - 1e-6), method="bounded")
    return float(res.fun)


def wald_floor(case: Case) -> float:
    """Wald's lower bound on the expected requests to the right decision."""
    e1, e2 = (BETA, ALPHA_SHARE) if case.delta == 0 else (ALPHA_SHARE, BETA)
    info = (1 - e2) * math.log((1 - e2) / e1) + e2 * math.log(e2 / (1 - e1))
    return info / closest_kl(case)


def setup(case: Case, scale: float | None) -> tuple[Setup, float]:
    """The error rate alone: the product of mixtures with its design size times ``scale``, or
    (``None``) the rule adopted since: paired bets (:mod:`meshlab.stats.bets`) at an even split,
    the product tuned per arm at 5%."""
    levers = Levers(design_scale=scale, bets=False) if scale is not None else Levers()
    effect = Effect(error_delta=case.delta)
    return alone(SimMetric("error-rate", TOL), effect, case.weight, levers, World(error_rate=BASE))


def alone(
    metric: SimMetric, effect: Effect, weight: float, levers: Levers, world: World
) -> tuple[Setup, float]:
    """One canary metric judged alone (its abort side at the experiment's alpha / 3), looks every
    1/:data:`LOOKS` of its one-look size up to 4x it; and that one-look size."""
    fixed = one_look_size(metric, ALPHA_SHARE, BETA, weight, "canary", world)
    every = max(100, int(round(fixed / LOOKS, -2)))
    horizon = int(math.ceil(4 * fixed / every) * every)
    s = Setup(
        (metric,), ALPHA_SHARE, BETA, "canary", ((math.inf, weight),), every, horizon, world,
        effect, levers,
    )  # fmt: skip
    return s, fixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    for i, case in enumerate(CASES):
        floor = wald_floor(case)
        for scale in (*SCALES, None):
            s, fixed = setup(case, scale)
            out = simulate(s, args.reps, np.random.default_rng(1000 + i))
            q = summarize(out)
            wrong = out.abort if case.delta == 0 else out.promote
            k = int(wrong.sum())
            lo, hi = calibration.clopper_pearson(k, args.reps)
            rows.append(
                {
                    "scenario": case.name,
                    "design_scale": "adopted" if scale is None else scale,
                    "one_look_n": round(fixed),
                    "wald_floor_ratio": round(floor / fixed, 3),
                    "median_ratio": round(q["median"] / fixed, 3),
                    "p90_ratio": round(q["p90"] / fixed, 3),
                    "wrong_rate": k / args.reps,
                    "wrong_ci": f"[{lo:.3f}, {hi:.3f}]",
                    "undecided": q["undecided"],
                    "target": case.target,
                    "reps": args.reps,
                    "look_every": s.every,
                }
            )
            print(rows[-1], flush=True)
    joint = joint_rows(args.reps)
    with (HERE / "sequential_floor.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["study", *rows[0]])
        writer.writeheader()
        writer.writerows({"study": "error rate alone", **r} for r in rows)
        writer.writerows({"study": "joint", **r} for r in joint)
    write_markdown(rows, joint)


def joint_rows(reps: int) -> list[dict[str, object]]:
    """The calibration's scenarios, every metric's design size scaled alike."""
    rows: list[dict[str, object]] = []
    for scenario in calibration.SCENARIOS:
        if scenario.name not in JOINT:
            continue
        for scale in JOINT_SCALES:
            s = scenario.setup(Levers(design_scale=scale))
            fixed = calibration.fixed_n(s)
            out = simulate(s, reps, np.random.default_rng(7))
            q = summarize(out)
            wrong = out.abort if scenario.kind == "aa" else out.promote
            rows.append(
                {
                    "scenario": scenario.name,
                    "design_scale": scale,
                    "one_look_n": round(fixed),
                    "median_ratio": round(q["median"] / fixed, 3),
                    "p90_ratio": round(q["p90"] / fixed, 3),
                    "wrong_rate": float(wrong.mean()),
                    "target": scenario.target,
                    "reps": reps,
                    "look_every": s.every,
                }
            )
            print(rows[-1], flush=True)
    return rows


def write_markdown(rows: list[dict[str, object]], joint: list[dict[str, object]]) -> None:
    lines = [
        "# Error-rate decisions against Wald's floor and the mixture's tuning",
        "",
        f"Generated by `analysis/sequential_floor.py`: error-rate metric alone, base rate {BASE:.0%},"
        f" tolerance {TOL:.0%} (absolute), alpha share {ALPHA_SHARE:.4f}, beta {BETA},"
        f" {rows[0]['reps']} replications per cell. Ratios are requests over the metric's own"
        " one-look size; `wrong` is the false-abort (A/A) or false-promote rate with a 95%"
        " Clopper-Pearson interval. `design x`: the product of the two arms' beta-binomial"
        " mixtures with its design size scaled, or `adopted`: the rule used since (paired bets,"
        " `meshlab.stats.bets`, at an even split; at 5% the product, each arm tuned to its"
        " share).",
        "",
        "| scenario | one-look n | Wald floor (mean) | design x | median | p90 | wrong | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['one_look_n']} | {r['wald_floor_ratio']} |"
            f" {r['design_scale']} | {r['median_ratio']} | {r['p90_ratio']} |"
            f" {r['wrong_rate']:.3f} {r['wrong_ci']} | {r['target']} |"
        )
    lines += [
        "",
        "## The joint experiment (three metrics), every design size scaled alike",
        "",
        "| scenario | design x | median | p90 | wrong | target |",
        "|---|---|---|---|---|---|",
    ]
    for r in joint:
        lines.append(
            f"| {r['scenario']} | {r['design_scale']} | {r['median_ratio']} | {r['p90_ratio']} |"
            f" {r['wrong_rate']:.3f} | {r['target']} |"
        )
    (HERE / "sequential_floor.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
