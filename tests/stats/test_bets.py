"""Error rates by bets on grouped requests (:mod:`meshlab.stats.bets`,
:mod:`meshlab.stats.arrival`): coverage under continuous monitoring for any distribution of the
group difference (pairs and a 5% canary's groups of 1 + 19), bounds that decide as the capital
does, and groups that are the same however the rows are split into batches."""

from __future__ import annotations

import math

import numpy as np
import pytest

from meshlab.stats import Comparison, tolbets
from meshlab.stats.arrival import ArrivalGroups, grouping_for, groups_at
from meshlab.stats.bets import (
    PAIRS,
    Grouping,
    bet_bounds,
    bet_scale,
    log_capital,
    pair_counts,
    rejected,
)

from .helpers import ERRORS, analysis, canary


def paths(rng: np.random.Generator, reps: int, n: int, odds: tuple[float, float]) -> np.ndarray:
    """Cumulative pair level counts after every pair: shape (reps, n, levels)."""
    u = rng.random((reps, n))
    plus = np.cumsum(u < odds[0], axis=1)
    minus = np.cumsum((u >= odds[0]) & (u < odds[0] + odds[1]), axis=1)
    return pair_counts(plus, minus, np.broadcast_to(np.arange(1, n + 1), (reps, n)))


def group_paths(
    rng: np.random.Generator, reps: int, n: int, g: Grouping, rates: tuple[float, float]
) -> np.ndarray:
    """Cumulative level counts after every group of (candidate, reference) requests failing at
    ``rates``: shape (reps, n, levels)."""
    kc = rng.binomial(g.cand, rates[0], (reps, n))
    kr = rng.binomial(g.ref, rates[1], (reps, n))
    step = np.zeros((reps, n, g.levels))
    np.put_along_axis(step, (kc * (g.ref + 1) + kr)[..., None], 1.0, axis=2)
    return np.cumsum(step, axis=1)


@pytest.mark.parametrize(
    ("odds", "scale"),
    [
        ((0.0198, 0.0198), bet_scale(0.01)),  # two arms failing 1% each: mean 0
        ((0.3, 0.3), bet_scale(0.01)),  # any distribution with mean 0, far from the design
        ((0.05, 0.05), 0.05),  # a prior far from the growth-optimal bet
    ],
)
def test_no_side_is_ever_crossed_more_often_than_its_level(
    odds: tuple[float, float], scale: float
) -> None:
    """Checked after every pair: P(lower ever > mean) and P(upper ever < mean) <= level."""
    rng = np.random.default_rng(4)
    reps, n, level = 300, 3000, 0.1
    mean = odds[0] - odds[1]
    counts = paths(rng, reps, n, odds)[:, ::5]
    above = rejected(counts, mean, level, scale, True).any(axis=1).mean()
    below = rejected(counts, mean, level, scale, False).any(axis=1).mean()
    limit = level + 3 * math.sqrt(level * (1 - level) / reps)
    assert above <= limit and below <= limit, (above, below)
    # and it has power: a mean 5 standard errors off is found in most runs at the same level
    off = 5 * math.sqrt((odds[0] + odds[1] - mean**2) / n)
    assert rejected(counts, mean - off, level, scale, True)[:, -1].mean() > 0.5


@pytest.mark.parametrize(
    ("rates", "widen"),
    [
        ((0.01, 0.01), 1.0),  # a 5% canary A/A at a 1% base rate
        ((0.2, 0.3), 1.0),  # far from the design: mean -0.1, many failures on both sides
        ((0.02, 0.01), 0.1),  # a prior far from the growth-optimal bet
    ],
)
def test_groups_of_one_and_19_keep_both_levels_under_continuous_monitoring(
    rates: tuple[float, float], widen: float
) -> None:
    g = grouping_for(0.05)
    assert g == Grouping(1, 19)
    rng = np.random.default_rng(6)
    reps, n, level = 300, 1500, 0.1
    counts = group_paths(rng, reps, n, g, rates)[:, ::10]
    mean, scale = rates[0] - rates[1], widen * bet_scale(0.01, g)
    above = rejected(counts, mean, level, scale, True, g).any(axis=1).mean()
    below = rejected(counts, mean, level, scale, False, g).any(axis=1).mean()
    limit = level + 3 * math.sqrt(level * (1 - level) / reps)
    assert above <= limit and below <= limit, (above, below)
    var = rates[0] * (1 - rates[0]) + rates[1] * (1 - rates[1]) / g.ref
    off = 5 * math.sqrt(var / n)
    assert rejected(counts, mean - off, level, scale, True, g)[:, -1].mean() > 0.5


def test_bounds_decide_exactly_as_the_capital_and_are_monotone() -> None:
    rng = np.random.default_rng(8)
    pairs = rng.integers(0, 20_000, 400).astype(float)
    plus = rng.binomial(pairs.astype(int), 0.02).astype(float)
    minus = rng.binomial((pairs - plus).astype(int), 0.015).astype(float)
    scale = bet_scale(0.01)
    counts = pair_counts(plus, minus, pairs)
    for thr, tol in ((0.0, 0.01), (0.01, 0.01), (-0.005, 0.002)):
        lo, hi = bet_bounds(counts, 0.0167, 0.05, scale, (thr, tol))
        assert np.array_equal(lo > thr, rejected(counts, thr, 0.0167, scale, True))
        assert np.array_equal(hi < tol, rejected(counts, tol, 0.05, scale, False))
        est = np.where(pairs > 0, (plus - minus) / np.maximum(pairs, 1), 0.0)
        assert np.all(lo <= est + 1e-12) and np.all(hi >= est - 1e-12)
    assert np.all(lo[pairs == 0] == -1.0) and np.all(hi[pairs == 0] == 1.0)
    mus = np.linspace(-0.5, 0.5, 41)
    one = pair_counts(30.0, 12.0, 2000.0)
    caps = log_capital(one, mus, True, scale)
    assert np.all(np.diff(caps) <= 1e-9)  # above-bets: the capital falls as mu rises
    caps = log_capital(one, mus, False, scale)
    assert np.all(np.diff(caps) >= -1e-9)
    # groups of 1 + 19 too: bounds decide as the capitals, around the groups' mean
    g = Grouping(1, 19)
    grouped = group_paths(rng, 40, 3000, g, (0.02, 0.01))[:, ::97].reshape(-1, g.levels)
    lo, hi = bet_bounds(grouped, 0.0167, 0.05, bet_scale(0.01, g), (0.0, 0.01), g)
    assert np.array_equal(lo > 0, rejected(grouped, 0.0, 0.0167, bet_scale(0.01, g), True, g))
    assert np.array_equal(hi < 0.01, rejected(grouped, 0.01, 0.05, bet_scale(0.01, g), False, g))
    est = grouped @ g.values / grouped.sum(axis=1)
    assert np.all(lo <= est + 1e-12) and np.all(hi >= est - 1e-12)


@pytest.mark.parametrize("weight", [0.5, 0.05, 0.8])
def test_groups_do_not_depend_on_how_rows_are_split_into_batches(weight: float) -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    arm = (rng.random(n) < weight).astype(np.int8)
    failed = rng.random(n) < np.where(arm == 1, 0.05, 0.02)
    ref_seen, cand_seen = np.cumsum(arm == 0), np.cumsum(arm == 1)
    cuts = np.sort(rng.choice(np.arange(1, n), 300, replace=False))
    g = grouping_for(weight)
    assert g is not None
    grouping = ArrivalGroups(g)
    looks = []
    for lo, hi in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [n])), strict=True):
        grouping.add(arm[lo:hi], failed[lo:hi])
        looks.append(grouping.counts.copy())
    levels, groups = groups_at(arm, failed, ref_seen[cuts - 1], cand_seen[cuts - 1], g)
    at = [np.bincount(levels[:m], minlength=g.levels) for m in groups]
    assert np.array_equal(np.asarray(at), np.asarray(looks[:-1]))
    snapshots = np.zeros((tolbets.SNAPSHOTS, g.levels), dtype=np.int64)
    np.add.at(snapshots, (tolbets.snapshot_of(np.arange(levels.size)), levels), 1)
    assert np.array_equal(snapshots, grouping.snapshots)  # the same groups, per snapshot
    # by hand: the k-th group is candidate rows k*c .. and reference rows k*r .. in order
    ref, cand = failed[arm == 0], failed[arm == 1]
    k = min(cand.size // g.cand, ref.size // g.ref)
    kc = cand[: k * g.cand].reshape(k, g.cand).sum(axis=1)
    kr = ref[: k * g.ref].reshape(k, g.ref).sum(axis=1)
    z = kc / g.cand - kr / g.ref
    assert looks[-1].sum() == k and math.isclose(float(looks[-1] @ g.values), float(z.sum()))
    if weight == 0.5:  # one-to-one pairs: (plus, minus) as before the groups
        assert g == PAIRS
        assert looks[-1][PAIRS.top] == int((cand[:k] & ~ref[:k]).sum())


def test_a_canary_comparison_judges_errors_by_bets_and_prometheus_rows_do_not() -> None:
    rng = np.random.default_rng(2)
    data = canary(rng, 20_000, err=(0.01, 0.05))
    c = Comparison(analysis(ERRORS))  # type: ignore[arg-type]
    c.update(data)
    result = c.assess()
    errors = result.metrics[0]
    assert "bets aimed at the tolerance" in errors.guarantee
    assert "pairs of requests" in errors.guarantee
    assert result.verdict.outcome == "abort" and errors.lower > 0
    plain = Comparison(analysis(ERRORS), paired_bets=False)  # type: ignore[arg-type]
    plain.update(data)
    assert "beta-binomial" in plain.assess().metrics[0].guarantee
    assert not Comparison(analysis(ERRORS), "shadow").bets_on(ERRORS)  # type: ignore[arg-type]
    # a 5% canary groups each candidate request with the next 19 reference requests
    small = Comparison(analysis(ERRORS), candidate_share=0.05)  # type: ignore[arg-type]
    assert small.bets_on(ERRORS) and small.grouping == Grouping(1, 19)
    five = canary(rng, 40_000, err=(0.01, 0.05), weight=0.05)
    small.update(five)
    grouped = small.assess().metrics[0]
    assert "groups of 1 candidate and 19 reference requests" in grouped.guarantee
    assert grouped.lower > 0 and grouped.lower < grouped.estimate < grouped.upper
