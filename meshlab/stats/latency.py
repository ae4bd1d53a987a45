"""Latency: an anytime-valid interval for the relative quantile change candidate/baseline - 1.

Method (Howard & Ramdas, "Sequential estimation of quantiles with applications to A/B-testing
and best-arm identification", Bernoulli 28(3), 2022, Theorem 1 and section 5): for each arm a
confidence sequence for the quantile ``Q(p)`` is a pair of order statistics ``X_(l_n) <= Q(p) <=
X_(u_n)`` whose indices come from a beta-binomial mixture boundary
(:mod:`meshlab.stats.boundaries`). The ratio interval combines one-sided bounds of both arms:

    lower = L_cand / U_base - 1      (abort side; each arm bound at alpha_share / 2)
    upper = U_cand / L_base - 1      (promote side; each arm bound at beta / 2)

Guarantee (union bound over the two arms, Ville's inequality for each): with i.i.d. latencies
within each arm, P(exists n: lower_n > true ratio - 1) <= alpha_share and
P(exists n: upper_n < true ratio - 1) <= beta, however often the bounds are looked at.
The order statistics are read from a fixed log-spaced histogram (bins 0.1% wide) so that a live
run updates in O(batch) and queries in O(bins); lower bounds take a bin's lower edge and upper
bounds its upper edge, so the quantisation only widens the interval (by at most 0.1% per bound).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt

from meshlab.stats.boundaries import DEFAULT_DESIGN_N, order_index_lower, order_index_upper

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

GUARANTEE = (
    "anytime-valid: P(lower ever above the true relative quantile change) <= {a:.4g}, "
    "P(upper ever below it) <= {b:.4g} (Howard & Ramdas 2022 quantile confidence sequences, "
    "union bound over arms; i.i.d. latencies within each arm)"
)


@dataclass(frozen=True)
class LogGrid:
    """Histogram bins: [0, lo), then [lo r^j, lo r^(j+1)) up to ``hi``, then [hi, inf)."""

    lo: float = 1e-3
    hi: float = 1e7
    ratio: float = 1.001

    @cached_property
    def edges(self) -> FloatArray:
        steps = int(np.ceil(np.log(self.hi / self.lo) / np.log(self.ratio)))
        inner = self.lo * self.ratio ** np.arange(steps + 1, dtype=np.float64)
        return np.concatenate(([0.0], inner, [np.inf]))

    @cached_property
    def size(self) -> int:
        return int(self.edges.shape[0] - 1)

    def index(self, values: npt.ArrayLike) -> IntArray:
        """Bin index of each value (values are latencies, >= 0)."""
        x = np.asarray(values, dtype=np.float64)
        steps = np.floor(
            np.log(np.clip(x, self.lo, self.hi * self.ratio) / self.lo) / np.log(self.ratio)
        )
        j = steps.astype(np.int64) + 1
        j = np.where(x < self.lo, 0, np.clip(j, 1, self.size - 1))
        # Correct the rare log-rounding error so a value always lies inside its bin.
        e = self.edges
        j = np.where((j > 0) & (x < e[j]), j - 1, j)
        j = np.where((j < self.size - 1) & (x >= e[np.minimum(j + 1, self.size)]), j + 1, j)
        return np.asarray(j, dtype=np.int64)


def _order_stat_bin(cumulative: IntArray, k: IntArray) -> IntArray:
    """Bin of the k-th smallest value (1-based) given cumulative counts over the last axis."""
    return np.asarray((cumulative < k[..., None]).sum(axis=-1), dtype=np.int64)


def quantile_bounds(
    cumulative: IntArray,
    p: float,
    lower_level: float,
    upper_level: float,
    grid: LogGrid,
    design_n: float = DEFAULT_DESIGN_N,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(lower, estimate, upper) of the p-quantile from cumulative histogram counts (..., bins).

    ``lower`` holds with probability >= 1 - lower_level at every n simultaneously, ``upper`` with
    1 - upper_level; 0 and +inf when the data cannot bound the quantile yet.
    """
    cum = np.asarray(cumulative, dtype=np.int64)
    return quantile_bounds_by_rank(
        cum[..., -1], lambda k: _order_stat_bin(cum, k), p, lower_level, upper_level, grid, design_n
    )


def quantile_bounds_by_rank(
    n: IntArray,
    kth_bin: Callable[[IntArray], IntArray],
    p: float,
    lower_level: float,
    upper_level: float,
    grid: LogGrid,
    design_n: float = DEFAULT_DESIGN_N,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """:func:`quantile_bounds` given ``n`` and a function from 1-based ranks to histogram bins.

    ``kth_bin(k)`` is the bin of the k-th smallest value (``grid.size`` when ``k > n``); the
    replay (:mod:`meshlab.stats.replay`) answers it without a cumulative histogram per look.
    """
    n = np.asarray(n, dtype=np.int64)
    edges = grid.edges
    last = grid.size - 1
    lo_k = order_index_lower(n, p, lower_level, design_n)
    hi_k = order_index_upper(n, p, upper_level, design_n)
    lo_bin = np.minimum(kth_bin(np.maximum(lo_k, 1)), last)
    hi_bin = np.minimum(kth_bin(np.minimum(hi_k, np.maximum(n, 1))), last)
    lower = np.where(lo_k >= 1, edges[lo_bin], 0.0)
    upper = np.where(hi_k <= n, edges[hi_bin + 1], np.inf)
    est_bin = np.minimum(kth_bin(np.maximum(np.ceil(p * n).astype(np.int64), 1)), last)
    left, right = edges[est_bin], edges[est_bin + 1]
    mid = np.where(np.isinf(right), left, np.where(left > 0, np.sqrt(left * right), right / 2))
    estimate = np.where(n > 0, mid, np.nan)
    return (
        np.asarray(lower, dtype=np.float64),
        np.asarray(estimate, dtype=np.float64),
        np.asarray(upper, dtype=np.float64),
    )


def _ratio(num: FloatArray, den: FloatArray) -> FloatArray:
    """num/den - 1 with the limits an interval needs (x/0 = inf, x/inf = 0, 0/0 = nan)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(num / den - 1.0, dtype=np.float64)


def ratio_interval(
    cum_baseline: IntArray,
    cum_candidate: IntArray,
    p: float,
    alpha_share: float,
    beta: float,
    grid: LogGrid,
    design_n: float = DEFAULT_DESIGN_N,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(lower, estimate, upper) of Q_cand(p)/Q_base(p) - 1 (see the module docstring)."""
    base = quantile_bounds(cum_baseline, p, beta / 2, alpha_share / 2, grid, design_n)
    cand = quantile_bounds(cum_candidate, p, alpha_share / 2, beta / 2, grid, design_n)
    return ratio_from_bounds(base, cand)


def ratio_from_bounds(
    base: tuple[FloatArray, FloatArray, FloatArray], cand: tuple[FloatArray, FloatArray, FloatArray]
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The ratio interval from each arm's (lower, estimate, upper) quantile bounds."""
    lb, eb, ub = base
    lc, ec, uc = cand
    lower = np.where(np.isinf(ub) | (lc == 0), -1.0, _ratio(lc, ub))
    upper = np.where((lb == 0) | np.isinf(uc), np.inf, _ratio(uc, lb))
    return lower, _ratio(ec, eb), upper
