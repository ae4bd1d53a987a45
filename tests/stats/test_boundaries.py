"""The beta-binomial mixture boundaries: coverage under continuous monitoring, and exactness."""

from __future__ import annotations

import numpy as np
import pytest

from meshlab.stats.boundaries import (
    difference_upper,
    log_mixture,
    order_index_lower,
    order_index_upper,
    prior_size,
    rate_lower,
    rate_upper,
)
from meshlab.stats.design import arm_designs


def test_per_arm_designs_cover_at_an_unequal_split_and_tighten_the_small_arm() -> None:
    """A 5% canary: each arm's mixture tuned to its own size stays valid at every look and is
    tighter where the decision falls than one size for both (what ``arm_designs`` buys)."""
    rng = np.random.default_rng(12)
    reps, looks = 120, 16
    n_c = np.arange(1, looks + 1) * 200  # the candidate's 5%
    n_b = n_c * 19
    p = 0.01
    s_c = np.cumsum(rng.binomial(200, p, (reps, looks)), axis=1)
    s_b = np.cumsum(rng.binomial(200 * 19, p, (reps, looks)), axis=1)
    base, cand = arm_designs(6000.0, 0.05)
    assert cand < 6000.0 < base
    for level in (0.1,):
        for high, low in ((s_c, s_b), (s_b, s_c)):
            nh, nl = (n_c, n_b) if high is s_c else (n_b, n_c)
            design = (cand, base) if high is s_c else (base, cand)
            up = difference_upper(high, nh, low, nl, level, design)
            assert (up < 0.0).any(axis=1).mean() <= level + 0.04  # true difference 0
    one = difference_upper(s_c[:, 10], n_c[10], s_b[:, 10], n_b[10], 0.05, 6000.0)
    split = difference_upper(s_c[:, 10], n_c[10], s_b[:, 10], n_b[10], 0.05, (cand, base))
    assert np.median(one - split) > 0.001  # the half-width 0.0105 -> 0.0086 at 2,200 requests


def test_rate_bounds_bracket_the_empirical_rate_and_shrink() -> None:
    n = np.array([100, 1000, 10000, 100000])
    up, lo = rate_upper(0.02 * n, n, 0.05), rate_lower(0.02 * n, n, 0.05)
    assert np.all(lo < 0.02) and np.all(up > 0.02)
    assert np.all(np.diff(up - lo) < 0)
    assert rate_upper(0, 0, 0.05) == 1.0 and rate_lower(0, 0, 0.05) == 0.0


def test_upper_rate_bound_is_valid_under_continuous_monitoring() -> None:
    rng = np.random.default_rng(7)
    reps, steps, p = 200, 3000, 0.05
    hits = np.cumsum(rng.random((reps, steps)) < p, axis=1)
    looks = np.arange(30, steps + 1, 30)
    up = rate_upper(hits[:, looks - 1], looks, 0.1)
    crossed = (up < p).any(axis=1).mean()
    assert crossed <= 0.1  # continuous monitoring, 100 looks
    # The same check with a pointwise 90% Wald bound at every look fails: the check can fail.
    wald = hits[:, looks - 1] / looks + 1.2816 * np.sqrt(p * (1 - p) / looks)
    assert (wald < p).any(axis=1).mean() > 0.1


def test_order_indices_bracket_the_quantile_rank() -> None:
    n = np.array([50, 500, 5000])
    lo, hi = order_index_lower(n, 0.9, 0.05), order_index_upper(n, 0.9, 0.05)
    assert np.all(lo <= np.ceil(0.9 * n)) and np.all(hi >= np.ceil(0.9 * n))
    assert lo[0] == 0 or lo[0] >= 1
    assert np.all(hi[1:] <= n[1:])


def test_mixture_is_a_martingale_in_expectation() -> None:
    # E[M_n(p)] = 1 under the null: exact check by summing the binomial law.
    from scipy import stats

    n, p = 60, 0.3
    s = np.arange(n + 1)
    for upper in (True, False):
        m = np.exp(log_mixture(s, n, p, prior_size(0.05, 100), upper))
        assert float((stats.binom.pmf(s, n, p) * m).sum()) == pytest.approx(1.0, rel=1e-6)


def test_difference_bound_is_conservative_against_brute_force() -> None:
    # The exact region {F + G < c} on a fine grid; the fast bound must not be below its supremum.
    sh, nh, sl, nl, level = 40.0, 3000.0, 25.0, 2500.0, 0.05
    m, c = prior_size(level, 2000), np.log(1 / level)
    ph, pl = np.linspace(1e-4, 0.04, 1500), np.linspace(1e-4, 0.04, 1500)

    def guard(main: np.ndarray, other: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.logaddexp(np.log1p(-0.02) + main, np.log(0.02) + other)
        return out

    f = guard(log_mixture(sh, nh, ph, m, False), log_mixture(sh, nh, ph, m, True))
    g = guard(log_mixture(sl, nl, pl, m, True), log_mixture(sl, nl, pl, m, False))
    inside = f[:, None] + g[None, :] < c
    exact = (ph[:, None] - pl[None, :])[inside].max()
    fast = float(difference_upper(sh, nh, sl, nl, level))
    assert exact <= fast <= exact + 0.15 * (exact - (sh / nh - sl / nl))


def test_difference_bound_covers_under_continuous_monitoring() -> None:
    rng = np.random.default_rng(11)
    reps, looks, every = 100, 20, 300
    ph, pl = 0.03, 0.02
    nh = np.arange(every, every * looks + 1, every)
    sh = np.cumsum(rng.binomial(every, ph, (reps, looks)), axis=1)
    sl = np.cumsum(rng.binomial(every, pl, (reps, looks)), axis=1)
    up = difference_upper(sh, nh, sl, nh, 0.1)
    assert (up < ph - pl).any(axis=1).mean() <= 0.1
