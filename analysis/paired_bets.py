"""Bets on paired or grouped requests against the product of two arms' mixtures, per canary metric (issue 14).

meshlab first bounded a canary difference ``p_cand - p_base`` through the product of each arm's
beta-binomial mixture (:func:`meshlab.stats.boundaries.difference_upper`): valid for every base
rate, but each arm pays its own mixture cost for the unknown rate. The alternative measured here
has no nuisance parameter at all (:mod:`meshlab.stats.bets`): pair the k-th candidate request with
the k-th reference request, ``Z_k = 1{candidate in A} - 1{reference in A}`` (A: "failed", or a
set of labels) has mean ``P(A) - Q(A)`` whatever the base rate, and a mixture of constant bets
(Waudby-Smith & Ramdas, "Estimating means of bounded random variables by betting", JRSS-B 86
(2024)) is a test martingale for every distribution of Z with a given mean.

* **Error rate** (adopted): the rules through the simulation engine, ``Levers(bets=False)``
  (the product) against ``Levers()`` (the bets ``Comparison`` uses: at an even split one-to-one
  pairs; at 5% each candidate request grouped with the next 19 reference requests,
  :mod:`meshlab.stats.arrival`) and, at 5%, one-to-one pairs (``Levers(groups=False)`` with the
  split forced even: they leave most reference rows unused, so they were never adopted there).
* **Prediction divergence (TV)** (adopted at an even split): the product bound per event,
  ``Levers(tv_bets=False)``, against the bets on label pairs per event
  (:func:`meshlab.stats.bets.tv_verdicts`: prior scale ``tol / 0.5``, the worst-case variance
  of Z; abort when any of the ``2^K - 2`` events' lower bounds, at ``alpha / 3`` split over the
  events, is above the threshold, promote when every event's upper bound at the full ``beta``
  is below the tolerance, as the product rule splits them).

Each metric is judged alone (abort side at alpha / 3, as in the three-metric experiment)
against its own one-look size, same look schedule for both rules, 95% Clopper-Pearson intervals
on the wrong-decision rate. Usage: ``nice -n 10 python analysis/paired_bets.py [--reps N]``;
writes ``paired_bets.csv`` / ``.md`` beside this file (about a minute).
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
from calibration import DIV_TOL, ERR_TOL, clopper_pearson
from sequential_floor import alone

from meshlab.stats.simulate import (
    Effect,
    Levers,
    Setup,
    SimMetric,
    World,
    simulate,
)

HERE = Path(__file__).resolve().parent
FloatArray = npt.NDArray[np.float64]
BoolArrays = tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], FloatArray]


@dataclass(frozen=True)
class Case:
    name: str
    metric: str  # "error-rate" | "prediction-divergence"
    weight: float
    times: float  # the effect in tolerances (0: A/A, the right decision is a promote)
    target: float


CASES = (
    Case("errors: A/A canary 50%", "error-rate", 0.5, 0.0, 0.6),
    Case("errors: A/A canary 5%", "error-rate", 0.05, 0.0, 0.6),
    Case("errors at tolerance", "error-rate", 0.5, 1.0, 0.6),
    Case("errors 2.5x tolerance", "error-rate", 0.5, 2.5, 0.15),
    Case("errors at tolerance, canary 5%", "error-rate", 0.05, 1.0, 0.6),
    Case("errors 2.5x tolerance, canary 5%", "error-rate", 0.05, 2.5, 0.15),
    Case("divergence: A/A canary 50%", "prediction-divergence", 0.5, 0.0, 0.6),
    Case("divergence at tolerance", "prediction-divergence", 0.5, 1.0, 0.6),
    Case("divergence 2.5x tolerance", "prediction-divergence", 0.5, 2.5, 0.15),
)


def setup(case: Case, levers: Levers) -> tuple[Setup, float]:
    """The engine's simulation of this metric alone, and its one-look size."""
    tol = ERR_TOL if case.metric == "error-rate" else DIV_TOL
    metric = SimMetric(case.metric, tol)
    effect = (
        Effect(error_delta=case.times * tol)
        if case.metric == "error-rate"
        else Effect(divergence=case.times * tol)
    )
    return alone(metric, effect, case.weight, levers, World())


def quantiles(at: FloatArray) -> tuple[float, float]:
    x = np.where(np.isnan(at), np.inf, at)
    return (
        float(np.quantile(x, 0.5, method="inverted_cdf")),
        float(np.quantile(x, 0.9, method="inverted_cdf")),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=300)
    args = parser.parse_args()
    rows: list[dict[str, object]] = []
    for i, case in enumerate(CASES):
        rules: list[tuple[str, BoolArrays]] = []
        if case.metric == "error-rate":
            even = case.weight == 0.5
            error_rules = [("product of mixtures", Levers(bets=False), None)]
            if not even:  # design_weight 0.5 makes a 5% split pair one to one (the bets have
                # no design size: it only decides how requests are grouped)
                error_rules.append(("one-to-one pairs (not adopted)", Levers(groups=False), 0.5))
            adopted = "paired bets (adopted)" if even else "bets on groups of 1 + 19 (adopted)"
            error_rules.append((adopted, Levers(), None))
            for rule, levers, forced in error_rules:
                s, fixed = setup(case, levers)
                s = replace(s, design_weight=forced)
                out = simulate(s, args.reps, np.random.default_rng(500 + i))
                rules.append((rule, (out.abort, out.promote, out.at)))
        else:
            for rule, levers in (
                ("product of mixtures", Levers(tv_bets=False)),
                ("paired bets per event (adopted)", Levers()),
            ):
                s, fixed = setup(case, levers)
                out = simulate(s, args.reps, np.random.default_rng(500 + i))
                rules.append((rule, (out.abort, out.promote, out.at)))
        for rule, (abort, promote, at) in rules:
            med, p90 = quantiles(at)
            wrong = abort if case.times == 0 else promote
            k = int(wrong.sum())
            lo, hi = clopper_pearson(k, args.reps)
            rows.append(
                {
                    "scenario": case.name,
                    "rule": rule,
                    "median_ratio": round(med / fixed, 3),
                    "p90_ratio": round(p90 / fixed, 3),
                    "wrong": "false abort" if case.times == 0 else "false promote",
                    "wrong_rate": round(k / args.reps, 4),
                    "wrong_ci": f"[{lo:.3f}, {hi:.3f}]",
                    "target": case.target,
                    "one_look_n": round(fixed),
                    "look_every": s.every,
                    "reps": args.reps,
                }
            )
            print(rows[-1], flush=True)
    with (HERE / "paired_bets.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "# Bets on paired or grouped requests against the product of two arms' mixtures",
        "",
        f"Written by `analysis/paired_bets.py` ({args.reps} replications per cell; each metric "
        "alone, abort side at alpha/3, promote side at beta; requests to a decision over the "
        "metric's one-look size; 95% Clopper-Pearson intervals).",
        "",
        "| scenario | rule | median / p90 | wrong decision [95% CI] | target (median) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['rule']} | {r['median_ratio']:.2f} / {r['p90_ratio']:.2f} | "
            f"{r['wrong']} {r['wrong_rate']:.3f} {r['wrong_ci']} | {r['target']} |"
        )
    (HERE / "paired_bets.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
