"""Bets aimed at the tolerance, the base rate plugged in: do they reach issue 14's medians?

meshlab judges an error rate by a *mixture* of constant bets on paired requests
(:mod:`meshlab.stats.bets`; ``Z`` = candidate failed - reference failed, in {-1, 0, 1}). The
mixture pays for not knowing the bet size: at the tolerance its median is 0.60-0.62 of the
one-look size (target 0.6), against 0.50 for Wald's SPRT told the true rates
(``sequential_floor.md``). Plug-in bets sized from the running mean of ``Z`` (aGRAPA) were no
better (``plugin_bets.md``): the mean of ``Z`` is the noisy part of the data.

This study sizes each bet for the decision instead, and learns only the nuisance. The abort side
tests H0: ``p_c - p_b <= 0`` and must have power at the tolerance; against the alternative
``p_c = p_b + tol`` the growth-optimal (GROW) bet on a pair is

    lambda_up = (q+ - q-) / (q+ + q-),   q+ = (p_b + tol)(1 - p_b),   q- = p_b (1 - p_b - tol),

which is also the best worst-case bet over the whole one-sided alternative ``{p_c - p_b >=
tol}``: a bet's growth only rises as ``p_c`` does, so its worst case is at the boundary (the
GROW notion of Grünwald, de Heide & Koolen, "Safe testing", JRSS-B 86 (2024)). Told the base
rate, no e-value for the pair null ``p_c = p_b`` grows faster than the KL divergence to the
closest null point, and this bet reaches 99.8-99.98% of that bound (table at the end of
``tolerance_bets.md``); so the GROW e-values for 2x2 tables (Turner, Ly & Grünwald, "Generic
E-variables for exact sequential k-sample tests that allow for optional stopping", J. Stat.
Plan. Inference 230 (2024)) cannot do materially better here. The promote side (H0: ``mu >=
tol``) bets below the tolerance with the GROW bet against ``mu = 0`` (the root of
``E[(tol - Z) / (1 + lambda (tol - Z))] = 0``).
Only ``p_b`` is unknown, and it is learnt from *every* reference request (concordant pairs
included), not from the few discordant ones: ``p_hat = (failures + w g) / (n + w)`` with the
prior guess ``g = max(tol, 1%)`` (as :func:`meshlab.stats.bets.bet_scale` guesses) worth
``w = 1 / g`` requests, one expected failure.

Each bet is fixed before the pairs it is applied to are seen, so each capital is a nonnegative
martingale with mean <= 1 under its null for every distribution of ``Z`` (Waudby-Smith & Ramdas
2024, section 5), and Ville's inequality keeps the anytime guarantee. Two schedules:

* **per look**: ``p_hat`` from the pairs before each look (the capital then depends on when the
  looks were, so an offline re-analysis must look when the live run did);
* **doubling snapshots**: ``p_hat`` from the first ``100 * 2^j`` pairs for the pairs after that
  snapshot, whenever the looks are: the capital depends on the counts at ``log2(n / 100)``
  snapshots, not on the look schedule, so count-only looks and the bulk replay stay possible.

Setting as ``plugin_bets.py`` (error rate alone, 50% canary paired in arrival order, abort side
at alpha / 3, promote side at beta, looks every 1/40 of the one-look size up to 4x it), at base
rates 0.2%, 1% and 5% with a tolerance of 1 point. Usage: ``nice -n 10 python
analysis/tolerance_bets.py [--reps N]``; writes ``tolerance_bets.md`` (about 30 s).
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import calibration  # the sibling script: Clopper-Pearson and the median interval
import numpy as np
import numpy.typing as npt
import sequential_floor as floor
from scipy import optimize

from meshlab.stats.simulate import Effect, Levers, SimMetric, World, simulate

HERE = Path(__file__).resolve().parent
FloatArray = npt.NDArray[np.float64]
FIRST_SNAPSHOT = 100  # pairs; then every doubling


@dataclass(frozen=True)
class Case:
    name: str
    base: float
    delta: float  # p_c - p_b
    target: float


TOL = 0.01
CASES = tuple(
    Case(f"{what}, base {base:.1%}", base, mult * TOL, target)
    for base in (0.01, 0.002, 0.05)
    for what, mult, target in (
        ("A/A", 0.0, 0.6),
        ("at tolerance", 1.0, 0.6),
        ("2.5x tolerance", 2.5, 0.15),
    )
)


RULES = (
    (False, 1.0, "tolerance bets, per look"),
    (True, 1.0, "tolerance bets, doubling snapshots"),
    (True, 1.5, "abort bet aimed at 1.5x tolerance, doubling snapshots"),
)


def lam_up(p: FloatArray, tol: float) -> FloatArray:
    """GROW bet that ``Z`` is above 0, against ``p_c = p + tol`` (lambda in [0, 1))."""
    plus, minus = (p + tol) * (1 - p), p * (1 - p - tol)
    return np.asarray((plus - minus) / (plus + minus), dtype=np.float64)


def lam_down(p: FloatArray, tol: float) -> FloatArray:
    """GROW bet that ``Z`` is below ``tol`` against ``p_c = p_b = p``: the root in lambda of
    ``E[(tol - Z) / (1 + lambda (tol - Z))] = 0`` (bisection; the bracket keeps factors > 0)."""
    q = p * (1 - p)
    lo, hi = np.zeros_like(p), np.full_like(p, 0.999 / (1 + tol))
    for _ in range(50):
        lam = 0.5 * (lo + hi)
        slope = (
            q * (tol - 1) / (1 + lam * (tol - 1))
            + q * (tol + 1) / (1 + lam * (tol + 1))
            + (1 - 2 * q) * tol / (1 + lam * tol)
        )
        lo, hi = np.where(slope > 0, lam, lo), np.where(slope > 0, hi, lam)
    return np.asarray(0.5 * (lo + hi), dtype=np.float64)


def tolerance_runs(
    case: Case,
    every: int,
    horizon: int,
    reps: int,
    snapshots: bool,
    aim: float,
    rng: np.random.Generator,
) -> tuple[FloatArray, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Requests at each run's decision (nan: none by the horizon), and whether it aborted /
    promoted. The abort side's bet is aimed at ``aim`` times the tolerance."""
    pb, pc = case.base, case.base + case.delta
    guess = max(TOL, 0.01)
    weight = 1 / guess
    log_a, log_b = math.log(1 / floor.ALPHA_SHARE), math.log(1 / floor.BETA)
    cap_up, cap_down = np.zeros(reps), np.zeros(reps)
    fails, seen = np.zeros(reps), 0  # reference failures by the last snapshot / pair so far
    frozen = np.zeros(reps)  # failures at the snapshot the bets are sized from
    frozen_n, next_snap = 0, FIRST_SNAPSHOT
    at = np.full(reps, np.nan)
    abort, promote = np.zeros(reps, dtype=bool), np.zeros(reps, dtype=bool)
    per_look = every // 2
    for look in range(1, horizon // every + 1):
        if not snapshots:
            frozen, frozen_n = fails.copy(), seen
        cand = rng.random((per_look, reps)) < pc
        ref = rng.random((per_look, reps)) < pb
        start = 0
        while start < per_look:  # pieces of this look with one bet each
            stop = per_look if not snapshots else min(per_look, start + next_snap - seen)
            p_hat = (frozen + weight * guess) / (frozen_n + weight)
            up, down = lam_up(p_hat, aim * TOL), lam_down(p_hat, TOL)
            z = cand[start:stop].astype(float) - ref[start:stop]
            plus, minus = (z == 1).sum(axis=0), (z == -1).sum(axis=0)
            zero = (stop - start) - plus - minus
            cap_up += plus * np.log1p(up) + minus * np.log1p(-up)
            cap_down += (
                plus * np.log1p(down * (TOL - 1))
                + minus * np.log1p(down * (TOL + 1))
                + zero * np.log1p(down * TOL)
            )
            fails += ref[start:stop].sum(axis=0)
            seen += stop - start
            start = stop
            if snapshots and seen == next_snap:
                frozen, frozen_n, next_snap = fails.copy(), seen, 2 * next_snap
        live = np.isnan(at)
        ab = live & (cap_up >= log_a)
        pr = live & (cap_down >= log_b) & ~ab
        at[ab | pr] = look * every
        abort |= ab
        promote |= pr
        if not np.isnan(at).any():
            break
    return at, abort, promote


def growth_check(base: float) -> str:
    """Growth per pair at the tolerance (``p_c = base + tol``) of the bet on Z against the
    best any e-value for the pair null ``p_c = p_b`` can do: no e-value grows faster than
    ``min_theta KL(q || P_theta x P_theta)`` (the growth-optimal one is the likelihood ratio
    against the reverse information projection onto the null's convex hull, whose KL is at most
    that of any single null point)."""
    pb, pc = base, base + TOL
    q = np.array([(1 - pc) * (1 - pb), pc * pb, pc * (1 - pb), (1 - pc) * pb])  # 00 11 10 01

    def kl(theta: float) -> float:
        p0 = np.array([(1 - theta) ** 2, theta**2, theta * (1 - theta), theta * (1 - theta)])
        return float(q @ np.log(q / p0))

    best = optimize.minimize_scalar(kl, bounds=(1e-6, 0.5), method="bounded")
    lam = float(lam_up(np.array([pb]), TOL)[0])
    bet = q[2] * math.log1p(lam) + q[3] * math.log1p(-lam)
    return (
        f"| {base:.1%} | {lam:.4f} | {bet:.6f} | {best.fun:.6f} (theta = {best.x:.4f}) | "
        f"{bet / best.fun:.4f} |"
    )


def row(case: Case, rule: str, at: FloatArray, wrong: npt.NDArray[np.bool_], fixed: float) -> str:
    x = np.where(np.isnan(at), np.inf, at)
    med = float(np.quantile(x, 0.5, method="inverted_cdf"))
    p90 = float(np.quantile(x, 0.9, method="inverted_cdf"))
    lo, hi = calibration.median_ci(at)
    k, n = int(wrong.sum()), wrong.size
    e_lo, e_hi = calibration.clopper_pearson(k, n)
    return (
        f"| {case.name} | {fixed:.0f} | {rule} | {med / fixed:.3f} [{lo / fixed:.3f}, "
        f"{hi / fixed:.3f}] | {p90 / fixed:.3f} | {k / n:.4f} [{e_lo:.4f}, {e_hi:.4f}] | "
        f"{case.target} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000)
    args = parser.parse_args()
    started = time.perf_counter()
    lines = [
        "# Bets aimed at the tolerance with a plug-in base rate, against the mixture of bets",
        "",
        f"Generated by `analysis/tolerance_bets.py` ({args.reps} runs per cell, seed 20261202; "
        "see its docstring). Error rate alone, 50% canary, tolerance 1 point. Ratios: requests to "
        "a decision over the metric's one-look size, median [95% CI] / p90; `wrong`: false abort "
        "(A/A) or false promote (an effect), 95% Clopper-Pearson interval.",
        "",
        "| scenario | one-look n | rule | median/fixed [95% CI] | p90/fixed | wrong | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, case in enumerate(CASES):
        s, fixed = floor.alone(
            SimMetric("error-rate", TOL),
            Effect(error_delta=case.delta),
            0.5,
            Levers(aimed_bets=False),
            World(error_rate=case.base),
        )
        wrong_of = (lambda ab, pr: ab) if case.delta == 0 else (lambda ab, pr: pr)
        out = simulate(s, args.reps, np.random.default_rng(20261202 + i))
        lines.append(row(case, "mixture of bets", out.at, wrong_of(out.abort, out.promote), fixed))
        print(lines[-1], flush=True)
        engine = replace(s, levers=Levers())  # meshlab.stats.tolbets, as Comparison judges
        out = simulate(engine, args.reps, np.random.default_rng(20261402 + i))
        lines.append(row(case, "adopted (meshlab.stats.tolbets)", out.at,
                         wrong_of(out.abort, out.promote), fixed))  # fmt: skip
        print(lines[-1], flush=True)
        for snapshots, aim, rule in RULES:
            rng = np.random.default_rng(20261302 + i)
            at, ab, pr = tolerance_runs(case, s.every, s.horizon, args.reps, snapshots, aim, rng)
            lines.append(row(case, rule, at, wrong_of(ab, pr), fixed))
            print(lines[-1], flush=True)
    lines += [
        "",
        "Growth per pair at the tolerance (nats): the abort side's bet on Z, told the base rate, "
        "against an upper bound on the growth of *any* e-value for the pair null `p_c = p_b` "
        "(the KL divergence to the closest null point; see `growth_check`):",
        "",
        "| base rate | bet | bet's growth | bound: min KL to the null | ratio |",
        "|---|---|---|---|---|",
        *(growth_check(base) for base in (0.002, 0.01, 0.05)),
        "",
        f"{time.perf_counter() - started:.0f} s.",
    ]
    (HERE / "tolerance_bets.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
