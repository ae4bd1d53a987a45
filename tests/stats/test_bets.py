"""Canary error rates by paired bets (:mod:`meshlab.stats.bets`): coverage under continuous
monitoring for any distribution of the pair difference, bounds that decide as the capital does,
and a pairing that is the same however the rows are split into batches."""

from __future__ import annotations

import math

import numpy as np
import pytest

from meshlab.stats import Comparison
from meshlab.stats.bets import (
    ArrivalPairs,
    bet_bounds,
    bet_scale,
    log_capital,
    pairs_at,
    rejected,
)

from .helpers import ERRORS, analysis, canary


def paths(rng: np.random.Generator, reps: int, n: int, odds: tuple[float, float]) -> np.ndarray:
    """Cumulative (plus, minus, pairs) after every pair: shape (3, reps, n)."""
    u = rng.random((reps, n))
    plus = np.cumsum(u < odds[0], axis=1)
    minus = np.cumsum((u >= odds[0]) & (u < odds[0] + odds[1]), axis=1)
    return np.stack([plus, minus, np.broadcast_to(np.arange(1, n + 1), (reps, n))])


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
    plus, minus, pairs = paths(rng, reps, n, odds)[:, :, ::5]
    above = rejected(plus, minus, pairs, mean, level, scale, True).any(axis=1).mean()
    below = rejected(plus, minus, pairs, mean, level, scale, False).any(axis=1).mean()
    limit = level + 3 * math.sqrt(level * (1 - level) / reps)
    assert above <= limit and below <= limit, (above, below)
    # and it has power: a mean 5 standard errors off is found in most runs at the same level
    off = 5 * math.sqrt((odds[0] + odds[1] - mean**2) / n)
    assert rejected(plus, minus, pairs, mean - off, level, scale, True)[:, -1].mean() > 0.5


def test_bounds_decide_exactly_as_the_capital_and_are_monotone() -> None:
    rng = np.random.default_rng(8)
    pairs = rng.integers(0, 20_000, 400).astype(float)
    plus = rng.binomial(pairs.astype(int), 0.02).astype(float)
    minus = rng.binomial((pairs - plus).astype(int), 0.015).astype(float)
    scale = bet_scale(0.01)
    for thr, tol in ((0.0, 0.01), (0.01, 0.01), (-0.005, 0.002)):
        lo, hi = bet_bounds(plus, minus, pairs, 0.0167, 0.05, scale, (thr, tol))
        assert np.array_equal(lo > thr, rejected(plus, minus, pairs, thr, 0.0167, scale, True))
        assert np.array_equal(hi < tol, rejected(plus, minus, pairs, tol, 0.05, scale, False))
        est = np.where(pairs > 0, (plus - minus) / np.maximum(pairs, 1), 0.0)
        assert np.all(lo <= est + 1e-12) and np.all(hi >= est - 1e-12)
    assert np.all(lo[pairs == 0] == -1.0) and np.all(hi[pairs == 0] == 1.0)
    mus = np.linspace(-0.5, 0.5, 41)
    caps = log_capital(30.0, 12.0, 2000.0, mus, True, scale)
    assert np.all(np.diff(caps) <= 1e-9)  # above-bets: the capital falls as mu rises
    caps = log_capital(30.0, 12.0, 2000.0, mus, False, scale)
    assert np.all(np.diff(caps) >= -1e-9)


@pytest.mark.parametrize("weight", [0.5, 0.05])
def test_pairs_do_not_depend_on_how_rows_are_split_into_batches(weight: float) -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    arm = (rng.random(n) < weight).astype(np.int8)
    failed = rng.random(n) < np.where(arm == 1, 0.05, 0.02)
    ref_seen, cand_seen = np.cumsum(arm == 0), np.cumsum(arm == 1)
    cuts = np.sort(rng.choice(np.arange(1, n), 300, replace=False))
    pairing = ArrivalPairs()
    looks = []
    for lo, hi in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [n])), strict=True):
        pairing.add(arm[lo:hi], failed[lo:hi])
        looks.append((pairing.plus, pairing.minus, pairing.pairs))
    plus, minus, pairs = pairs_at(arm, failed, ref_seen[cuts - 1], cand_seen[cuts - 1])
    assert list(zip(plus, minus, pairs, strict=True)) == [tuple(map(float, x)) for x in looks[:-1]]
    ref, cand = failed[arm == 0], failed[arm == 1]
    m = min(ref.size, cand.size)
    assert looks[-1] == (int((cand[:m] & ~ref[:m]).sum()), int((~cand[:m] & ref[:m]).sum()), m)


def test_a_canary_comparison_judges_errors_by_bets_and_prometheus_rows_do_not() -> None:
    rng = np.random.default_rng(2)
    data = canary(rng, 20_000, err=(0.01, 0.05))
    c = Comparison(analysis(ERRORS))  # type: ignore[arg-type]
    c.update(data)
    result = c.assess()
    errors = result.metrics[0]
    assert "constant bets" in errors.guarantee and "pairs of requests" in errors.guarantee
    assert result.verdict.outcome == "abort" and errors.lower > 0
    plain = Comparison(analysis(ERRORS), paired_bets=False)  # type: ignore[arg-type]
    plain.update(data)
    assert "beta-binomial" in plain.assess().metrics[0].guarantee
    assert not Comparison(analysis(ERRORS), "shadow").bets_on(ERRORS)  # type: ignore[arg-type]
    # a 5% canary would pair away most of the reference arm's rows: the arms' mixtures instead
    small = Comparison(analysis(ERRORS), candidate_share=0.05)  # type: ignore[arg-type]
    assert not small.bets_on(ERRORS)
    assert Comparison(analysis(ERRORS), candidate_share=0.5).bets_on(ERRORS)  # type: ignore[arg-type]
