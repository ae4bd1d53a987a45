"""Bets aimed at the tolerance (meshlab.stats.tolbets): the bet, the snapshots, the guarantee.

The capital from counts per snapshot (the live comparison, the simulation) must equal the one the
replay builds from the group sequence at every look, the reported bounds must decide exactly as
the capitals do, and the abort side's false-abort rate at the boundary of its null must stay
below its level (a fixed-seed simulation, with its Clopper-Pearson interval).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from meshlab.stats import tolbets
from meshlab.stats.bets import PAIRS, Grouping


def _sequence(rng: np.random.Generator, n: int, g: Grouping, pb: float, pc: float) -> np.ndarray:
    kc, kr = rng.binomial(g.cand, pc, n), rng.binomial(g.ref, pb, n)
    return np.asarray(kc * (g.ref + 1) + kr, dtype=np.int64)


def _counts(levels: np.ndarray, m: int, g: Grouping) -> np.ndarray:
    out = np.zeros((tolbets.SNAPSHOTS, g.levels))
    np.add.at(out, (tolbets.snapshot_of(np.arange(m)), levels[:m]), 1.0)
    return out


def test_snapshots_double() -> None:
    k = [0, 99, 100, 199, 200, 399, 400, 799, 800, 100 * 2**20]
    assert tolbets.snapshot_of(k).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 21]
    pieces = tolbets.split([0, 150], [250, 900])
    assert pieces[0, :3].tolist() == [100, 100, 50] and pieces[0].sum() == 250
    assert pieces[1, :5].tolist() == [0, 50, 200, 400, 100] and pieces[1].sum() == 750


def test_the_pair_bet_is_the_growth_optimal_one() -> None:
    """At mu0 = 0 against p_c = p_b + tol the optimum of q+ log(1 + l) + q- log(1 - l) is
    (q+ - q-) / (q+ + q-); below the tolerance against no effect, the root of the slope."""
    for p in (0.002, 0.01, 0.05, 0.3):
        plus, minus = (p + 0.01) * (1 - p), p * (1 - p - 0.01)
        t = float(tolbets.bets(np.array(p), np.array(0.0), 0.01, True))
        assert math.isclose(t, (plus - minus) / (plus + minus), rel_tol=1e-6)
        down = float(tolbets.bets(np.array(p), np.array(0.01), 0.01, False))
        q = p * (1 - p)
        lam = down / (1 - 0.01)  # the factor is 1 + lam (tol - Z)
        slope = sum(
            w * (0.01 - z) / (1 + lam * (0.01 - z)) for z, w in ((1, q), (-1, q), (0, 1 - 2 * q))
        )
        assert abs(slope) < 1e-6


def test_a_snapshots_bet_uses_only_the_snapshots_before_it() -> None:
    rng = np.random.default_rng(5)
    counts = _counts(_sequence(rng, 3000, PAIRS, 0.02, 0.02), 3000, PAIRS)
    rates = tolbets.base_rates(counts, 0.01, PAIRS)
    later = counts.copy()
    later[4, 1] += 50  # more reference failures in snapshot 4
    moved = tolbets.base_rates(later, 0.01, PAIRS)
    assert np.array_equal(rates[:5], moved[:5]) and np.all(moved[5:] > rates[5:])
    assert math.isclose(rates[0], 0.01)  # the prior guess max(tol, 1%) before any data


@pytest.mark.parametrize(
    ("g", "copies"),
    [(PAIRS, False), (Grouping(1, 19), False), (Grouping(3, 1), False), (PAIRS, True)],
)
def test_counts_and_sequence_give_the_same_verdict_at_every_look(g: Grouping, copies: bool) -> None:
    rng = np.random.default_rng(7)
    levels = _sequence(rng, 4000, g, 0.01, 0.025)
    looks = np.arange(0, 4001, 23)
    unmatched = rng.integers(0, 3, looks.size).astype(float)
    fails, passes = tolbets.sequence_verdicts(
        levels, looks, (0.0, 0.01), 0.0167, 0.05, 0.01, g, unmatched, copies
    )
    for j, m in enumerate(looks):
        f, p = tolbets.verdicts(_counts(levels, m, g), (0.0, 0.01), 0.0167, 0.05, 0.01, g,
                                unmatched[j], copies)  # fmt: skip
        assert (bool(f), bool(p)) == (bool(fails[j]), bool(passes[j])), m
    assert fails.any()  # the effect (1.5 points against a 1 point tolerance) is found


def test_copies_that_fail_together_are_bet_on_their_discordant_share() -> None:
    """Shadow copies of a request often fail together: few pairs are discordant, so the bet
    against an effect at the tolerance is larger than independent arms at that base rate give
    (the Z = +1 / -1 odds it faces are (d + tol) / 2 against (d - tol) / 2)."""
    counts = np.zeros((tolbets.SNAPSHOTS, 4))
    counts[0] = [9_100, 200, 200, 500]  # 5% of requests fail on both copies, 4% on one
    d = tolbets.base_rates(counts, 0.01, PAIRS, copies=True)[1]
    assert math.isclose(d, (400 + 100 * 0.02) / (10_000 + 100))
    copies = float(tolbets.bets(np.array(d), np.array(0.0), 0.01, True, copies=True))
    assert math.isclose(copies, 0.01 / d, rel_tol=1e-6)  # (q+ - q-) / (q+ + q-) = tol / d
    p = tolbets.base_rates(counts, 0.01, PAIRS)[1]  # the reference fails 7% of the time
    assert copies > 2 * float(tolbets.bets(np.array(p), np.array(0.0), 0.01, True))


@pytest.mark.parametrize("g", [PAIRS, Grouping(1, 19)])
def test_bounds_decide_exactly_as_the_capitals(g: Grouping) -> None:
    rng = np.random.default_rng(11)
    counts = np.stack(
        [_counts(_sequence(rng, 2500, g, 0.01, pc), m, g)
         for pc in (0.0, 0.01, 0.02, 0.03) for m in (0, 150, 800, 2500)]
    )  # fmt: skip
    for thresholds in ((0.0, 0.01), (0.01, 0.01)):
        lo, hi = tolbets.bounds(counts, 0.0167, 0.05, 0.01, thresholds, g)
        fails, passes = tolbets.verdicts(counts, thresholds, 0.0167, 0.05, 0.01, g)
        data = counts.sum(axis=(-2, -1)) > 0
        assert np.array_equal(lo > thresholds[0], fails)
        assert np.array_equal((hi < thresholds[1]) & data, passes)
        total = counts.sum(axis=1)
        est = (total @ g.values) / np.maximum(total.sum(axis=1), 1)
        assert np.all(lo[data] <= est[data] + 1e-12) and np.all(hi[data] >= est[data] - 1e-12)


def test_false_aborts_at_the_null_boundary_stay_below_the_level() -> None:
    """Both arms at 1%: P(the lower bound ever exceeds 0) <= alpha, checked at 100 looks."""
    rng = np.random.default_rng(20261201)
    reps, n, alpha = 400, 8000, 0.05
    looks = np.arange(80, n + 1, 80)
    aborted = 0
    for _ in range(reps):
        levels = _sequence(rng, n, PAIRS, 0.01, 0.01)
        fails, _ = tolbets.sequence_verdicts(levels, looks, (0.0, 0.01), alpha, 0.05, 0.01)
        aborted += int(fails.any())
    low = float(sps.beta.ppf(0.025, aborted, reps - aborted + 1)) if aborted else 0.0
    assert low < alpha, (aborted, reps)
    assert aborted / reps < alpha, (aborted, reps)
