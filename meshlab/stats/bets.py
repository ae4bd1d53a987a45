"""Bets on groups of requests: the groups, and a mixture over bet sizes (issue 14).

The mixture judges the canary TV distance (:func:`tv_verdicts`). Error rates are judged on the
same groups by bets aimed at the tolerance (:mod:`meshlab.stats.tolbets`, which took the
mixture's place there; :func:`verdicts` stays for the calibration's lever table).

Shadow: the two copies of a request (paired by ``request_id``) form a pair. Canary: requests are
grouped in the order the rows arrive (:mod:`meshlab.stats.arrival`), ``c`` candidate requests
with ``r`` reference requests (one of the two is 1: at a 5% split each candidate request is
grouped with the next 19 reference requests, at an even split they pair one to one). Either way

    Z_k = (candidate failures in group k) / c - (reference failures in group k) / r

lies in [-1, 1] with mean ``mu = p_cand - p_base``, whatever the base rate and however the
members of a group depend on each other (shadow copies of one request often fail together;
such a pair is Z = 0 and costs nothing). Canary routing is random and independent of the
outcome, so its groups are i.i.d. when each arm's requests are. A mean ``mu0`` is tested by a
mixture of constant bets (Waudby-Smith & Ramdas, "Estimating means of bounded random variables
by betting", JRSS-B 86 (2024), sections 3-4):

    K_n(mu0) = sum_j w_j prod_k (1 + lambda_j (Z_k - mu0)),

each product a nonnegative martingale with mean 1 for *every* distribution of Z with mean
``mu0`` (``E[1 + lambda (Z - mu0)] = 1``), so the mixture is one too, and by Ville's inequality
``P(exists n: K_n(mu0) >= 1/level) <= level``: a confidence sequence valid at every look, with
no nuisance parameter (the product of two arms' mixtures, :func:`meshlab.stats.boundaries.
difference_upper`, pays a mixture cost per arm for the unknown base rate). Z takes one of
``(c + 1) (r + 1)`` values (:class:`Grouping`), so ``K_n`` depends on the counts of each value
alone and a look costs that many times :data:`BETS` logarithms.

Bets: ``lambda_j = t_j / (1 + mu0)`` (betting that the mean is above ``mu0``; lower bounds) or
``-t_j / (1 - mu0)`` (below; upper bounds), ``t_j`` on a uniform grid of :data:`BETS` points in
(0, 0.98], weights ``w_j`` proportional to ``exp(-t_j^2 / (2 s^2))`` with ``s`` tuned before any
data to the tolerance (:func:`bet_scale`: the growth-optimal bet against an effect at the
tolerance is about ``tol / Var Z``; ``analysis/sequential_floor.md`` shows the decision times
flat over ``s`` x 0.35 ... 2). With this parametrisation ``K_n(mu0)`` is monotone in ``mu0``
(decreasing for the "above" bets, increasing for "below"), so the confidence set is an interval
and "lower bound > t" is exactly ``K_n(t) > 1/alpha`` for the "above" bets: decisions need one
capital, and bounds are found by bisection only for the report.

Guarantee (each side): P(lower ever above ``p_cand - p_base``) <= alpha_share and P(upper ever
below it) <= beta, for i.i.d. groups (canary: i.i.d. requests within each arm, in an arrival
order that does not depend on their outcomes). Measured against the product of the two arms'
mixtures (``analysis/paired_bets.md``, errors alone over the one-look size, median / p90).
Prometheus pseudo-samples (a window's failures listed together: their order is not random)
keep the product bound (``Comparison(paired_bets=False)``).

The canary TV distance uses the same bets on label pairs (:func:`tv_verdicts`): for every event A
(a non-empty proper set of labels) ``Z_A = 1{candidate label in A} - 1{reference label in A}``
has mean ``P(A) - Q(A)`` and TV is the largest of them; the abort side splits its level over the
``2^K - 2`` events, the promote side runs each at the full beta (intersection-union, as the
arms' mixtures per event do). ``analysis/paired_bets.md``: A/A 0.86 -> 0.78 of the one-look size
alone, at the tolerance 0.82 -> 0.68.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import numpy.typing as npt
from scipy.special import logsumexp

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

BETS = 200  # grid points of the mixture over bet sizes
_T = np.linspace(0.98 / BETS, 0.98, BETS)
_RESOLUTION_BITS = 48  # a reported bound is searched to 2^-48 of [-1, 1] (resolution 2^-47)
GUARANTEE = (
    "anytime-valid: P(lower ever above the true effect) <= {a:.4g}, P(upper ever below it) <= "
    "{b:.4g} (mixture of constant bets on grouped requests, Waudby-Smith & Ramdas 2024; {how})"
)


@dataclass(frozen=True)
class Grouping:
    """``cand`` candidate requests against ``ref`` reference requests per group. A group's
    counts are kept per (candidate failures, reference failures): level ``kc * (ref + 1) + kr``.
    """

    cand: int = 1
    ref: int = 1

    @property
    def levels(self) -> int:
        return (self.cand + 1) * (self.ref + 1)

    @cached_property
    def values(self) -> FloatArray:
        """Z of each level: ``kc / cand - kr / ref``."""
        kc, kr = np.divmod(np.arange(self.levels), self.ref + 1)
        return np.asarray(kc / self.cand - kr / self.ref, dtype=np.float64)

    @property
    def top(self) -> int:
        """The level of Z = +1 (every candidate request failed, no reference request did)."""
        return self.cand * (self.ref + 1)

    def describe(self) -> str:
        if self.cand == self.ref == 1:
            return "pairs of requests"
        return f"groups of {self.cand} candidate and {self.ref} reference requests"


PAIRS = Grouping(1, 1)


def pair_counts(plus: npt.ArrayLike, minus: npt.ArrayLike, pairs: npt.ArrayLike) -> FloatArray:
    """:data:`PAIRS` level counts (last axis) from the counts of Z = +1, Z = -1 and all pairs."""
    up, down = np.asarray(plus, dtype=np.float64), np.asarray(minus, dtype=np.float64)
    rest = np.asarray(pairs, dtype=np.float64) - up - down
    return np.stack([rest, down, up, np.zeros_like(rest)], axis=-1)


def bet_scale(tolerance: float, grouping: Grouping = PAIRS) -> float:
    """The prior scale ``s`` of the bets: ``tol / Var Z`` at a base rate ``max(tol, 1%)``."""
    p = min(max(tolerance, 0.01), 0.5)
    spread = 1.0 / grouping.cand + 1.0 / grouping.ref
    return float(max(tolerance, 1e-6) / (spread * p * (1 - p)))


def log_capital(
    counts: npt.ArrayLike, mu: npt.ArrayLike, above: bool, scale: float, grouping: Grouping = PAIRS
) -> FloatArray:
    """log K_n(mu) from the count of groups at each level (last axis of ``counts``; broadcast).

    ``above``: the bets that the mean exceeds ``mu`` (large when ``mu`` is too low: lower
    bounds); else the bets that it is below (upper bounds).
    """
    c = np.asarray(counts, dtype=np.float64)
    seen = c.reshape(-1, c.shape[-1]).any(axis=0)  # levels no group reached cost nothing
    c, values = c[..., seen][..., None], grouping.values[seen]  # (..., levels seen, 1)
    m = np.clip(np.asarray(mu, dtype=np.float64), -1.0 + 1e-9, 1.0 - 1e-9)[..., None, None]
    weights = -0.5 * (_T / scale) ** 2
    weights = weights - logsumexp(weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        # above: lambda = t / (1 + mu), each factor 1 + t (Z - mu) / (1 + mu) > 0; below: -t / (1 - mu)
        lam = _T / (1.0 + m) if above else -_T / (1.0 - m)
        step = lam * (values[:, None] - m)
        growth = (c * np.log1p(step)).sum(axis=-2)
        out = logsumexp(growth + weights, axis=-1)
    return np.asarray(np.where(np.isnan(out), -np.inf, out), dtype=np.float64)


def rejected(
    counts: npt.ArrayLike,
    mu: npt.ArrayLike,
    level: float,
    scale: float,
    above: bool,
    grouping: Grouping = PAIRS,
) -> BoolArray:
    """Where ``mu`` is outside the confidence set at ``level``: ``K_n(mu) > 1/level``.

    ``above`` (bets on a mean above ``mu``): the lower bound is above ``mu``; else the upper
    bound is below it.
    """
    cap = log_capital(counts, mu, above, scale, grouping)
    return np.asarray(cap > math.log(1.0 / level), dtype=np.bool_)


def _with_unmatched(counts: FloatArray, unmatched: npt.ArrayLike, grouping: Grouping) -> FloatArray:
    """Shadow: failed candidate copies still without their reference, as groups with Z = +1
    (pessimistic: missing data can only delay a promote)."""
    u = np.asarray(unmatched, dtype=np.float64)
    if not np.any(u):
        return counts
    out = np.array(np.broadcast_to(counts, np.broadcast_shapes(counts.shape, (*u.shape, 1))))
    out[..., grouping.top] += u
    return out


def verdicts(
    counts: npt.ArrayLike,
    thresholds: tuple[float, float],
    alpha_share: float,
    beta: float,
    scale: float,
    grouping: Grouping = PAIRS,
    unmatched: npt.ArrayLike = 0.0,
) -> tuple[BoolArray, BoolArray]:
    """(fails, passes): lower bound above the abort threshold, upper bound below the tolerance
    (``thresholds``), where there is a group; ``unmatched`` as in :func:`bet_bounds`."""
    c = np.asarray(counts, dtype=np.float64)
    fails = rejected(c, thresholds[0], alpha_share, scale, True, grouping)
    wide = _with_unmatched(c, unmatched, grouping)
    passes = rejected(wide, thresholds[1], beta, scale, False, grouping)
    data = c.sum(axis=-1) > 0
    return fails & data, passes & data


def bet_interval(
    counts: npt.ArrayLike,
    alpha_share: float,
    beta: float,
    scale: float,
    thresholds: tuple[float, float],
    grouping: Grouping = PAIRS,
    unmatched: float = 0.0,
) -> tuple[float, float, float]:
    """(lower, estimate, upper) of ``p_cand - p_base`` for the report (see :func:`bet_bounds`)."""
    c = np.asarray(counts, dtype=np.float64)
    lower, upper = bet_bounds(c, alpha_share, beta, scale, thresholds, grouping, unmatched)
    n = float(c.sum())
    estimate = float(c @ grouping.values) / n if n > 0 else math.nan
    return float(lower), estimate, float(upper)


def bet_bounds(
    counts: npt.ArrayLike,
    alpha_share: float,
    beta: float,
    scale: float,
    thresholds: tuple[float, float],
    grouping: Grouping = PAIRS,
    unmatched: npt.ArrayLike = 0.0,
) -> tuple[FloatArray, FloatArray]:
    """(lower, upper) confidence bounds, vectorised; (-1, 1) where there is no group yet.

    ``thresholds`` = (abort threshold, tolerance): the bisection starts at them, so "lower >
    abort threshold" and "upper < tolerance" hold exactly where :func:`rejected` says so.
    ``unmatched`` (shadow): failed candidate copies still without their reference, counted on
    the upper side only as pairs with Z = +1 (pessimistic: missing data can only delay a
    promote).
    """
    c = np.asarray(counts, dtype=np.float64)
    n = c.sum(axis=-1)
    lower = _bisect(c, alpha_share, scale, thresholds[0], True, grouping)
    wide = _with_unmatched(c, unmatched, grouping)
    upper = _bisect(wide, beta, scale, thresholds[1], False, grouping)
    return (
        np.asarray(np.where(n > 0, lower, -1.0), dtype=np.float64),
        np.asarray(np.where(n > 0, upper, 1.0), dtype=np.float64),
    )


def search_edge(
    rejects: Callable[[FloatArray], BoolArray], start: npt.ArrayLike, end: float, bits: int = 3
) -> FloatArray:
    """The end of a confidence set ``{mu: not rejects(mu)}`` on one side, searched from ``start``.

    ``end`` is the range's end inside the set (1 for a lower bound, -1 for an upper one);
    ``rejects`` is vectorised over a trailing axis of ``mu``. The result is beyond ``start``
    exactly where ``start`` is rejected, else a rejected ``mu`` within 2^-47 of the set
    (conservative), or ``-end`` where nothing on that side is rejected. Each round tries
    ``2^bits - 1`` values at once and keeps the cell where rejection stops (``bits`` divides
    48): 16 rounds of 8 cells resolve as much as 48 halvings, in a third of the calls; wider
    rounds cost more than they save once the capital's own arithmetic dominates.
    """
    first = np.asarray(start, dtype=np.float64)
    start_rejected = rejects(first[..., None])[..., 0]
    inside = np.where(start_rejected, end, first)  # a mu inside the set
    outside = np.where(start_rejected, first, -end)  # a rejected mu (or the range's far end)
    points = 2**bits - 1
    cells = np.arange(1, points + 1) / (points + 1)
    for _ in range(_RESOLUTION_BITS // bits):
        mids = outside[..., None] + (inside - outside)[..., None] * cells
        run = np.cumprod(rejects(mids), axis=-1).sum(axis=-1)  # rejected from the outside in
        last = np.take_along_axis(mids, np.maximum(run - 1, 0)[..., None], axis=-1)[..., 0]
        kept = np.take_along_axis(mids, np.minimum(run, points - 1)[..., None], -1)[..., 0]
        outside, inside = (
            np.where(run > 0, last, outside),
            np.where(run < points, kept, inside),
        )
    # strictly beyond ``start`` where start is rejected, so the report decides as the capital does
    nudged = np.nextafter(first, inside)
    return np.asarray(
        np.where(start_rejected & (outside == first), nudged, outside), dtype=np.float64
    )


def _bisect(
    counts: FloatArray, level: float, scale: float, start: float, above: bool, grouping: Grouping
) -> FloatArray:
    """The end of the confidence set ``{mu: K_n(mu) <= 1/level}`` on one side
    (:func:`search_edge`): above-bets reject every ``mu`` below some L (the set is ``[L, 1]``),
    below-bets every ``mu`` above some U (``[-1, U]``)."""

    def out(mu: FloatArray) -> BoolArray:
        return rejected(counts[..., None, :], mu, level, scale, above, grouping)

    return search_edge(out, np.full(counts.shape[:-1], float(start)), 1.0 if above else -1.0)


# The largest variance of a pair's event difference Z_A in {-1, 0, 1} (P(Z = +1) = P(Z = -1) =
# 1/4): the TV events' bets are tuned to it, since the label shares are not known in advance.
TV_VARIANCE = 0.5


def event_counts(joint: npt.ArrayLike, sets: npt.ArrayLike) -> FloatArray:
    """:data:`PAIRS` level counts (..., events, levels) of ``Z_A = 1{candidate label in A} -
    1{reference label in A}`` for each event A (0/1 rows of ``sets``, (events, K)), from the
    counts (..., K, K) of pairs by (candidate label, reference label)."""
    j = np.asarray(joint, dtype=np.float64)
    inside = np.asarray(sets, dtype=np.float64)
    outside = 1.0 - inside
    plus = np.einsum("...cr,ec,er->...e", j, inside, outside)
    minus = np.einsum("...cr,ec,er->...e", j, outside, inside)
    pairs = np.broadcast_to(j.sum(axis=(-2, -1))[..., None], plus.shape)
    return pair_counts(plus, minus, pairs)


def tv_verdicts(
    joint: npt.ArrayLike,
    sets: npt.ArrayLike,
    thresholds: tuple[float, float],
    alpha_share: float,
    beta: float,
    scale: float,
) -> tuple[BoolArray, BoolArray]:
    """(fails, passes) of the TV distance ``max_A P(A) - Q(A)`` from label pairs: it fails when
    any event's lower bound (level ``alpha_share`` split over the events) is above the abort
    threshold, passes when every event's upper bound (full ``beta`` each: intersection-union)
    is below the tolerance."""
    counts = event_counts(joint, sets)
    events = counts.shape[-2]
    fails, passes = verdicts(counts, thresholds, alpha_share / events, beta, scale)
    return np.asarray(fails.any(axis=-1), dtype=np.bool_), np.asarray(
        passes.all(axis=-1), dtype=np.bool_
    )


def tv_bet_bounds(
    joint: npt.ArrayLike,
    sets: npt.ArrayLike,
    alpha_share: float,
    beta: float,
    scale: float,
    thresholds: tuple[float, float],
) -> tuple[FloatArray, FloatArray]:
    """(lower, upper) of the TV distance, vectorised over the leading axes of ``joint``, deciding
    exactly as :func:`tv_verdicts`: the largest event bounds, clipped to [0, 1]."""
    return _tv_bounds(event_counts(joint, sets), alpha_share, beta, scale, thresholds)


def _tv_bounds(
    counts: FloatArray,
    alpha_share: float,
    beta: float,
    scale: float,
    thresholds: tuple[float, float],
) -> tuple[FloatArray, FloatArray]:
    lo, hi = bet_bounds(counts, alpha_share / counts.shape[-2], beta, scale, thresholds)
    return np.maximum(lo.max(axis=-1), 0.0), np.minimum(hi.max(axis=-1), 1.0)


def tv_bet_interval(
    joint: npt.ArrayLike,
    sets: npt.ArrayLike,
    alpha_share: float,
    beta: float,
    scale: float,
    thresholds: tuple[float, float],
) -> tuple[float, float, float]:
    """(lower, estimate, upper) of the TV distance for the report (:func:`tv_bet_bounds`); the
    estimate is the pairs' largest event difference."""
    counts = event_counts(joint, sets)  # once, for the bounds and the estimate
    lo, hi = _tv_bounds(counts, alpha_share, beta, scale, thresholds)
    n = float(counts[0].sum()) if counts.shape[0] else 0.0
    est = float((counts[:, PAIRS.top] - counts[:, 1]).max()) / n if n > 0 else math.nan
    return float(lo), est, float(hi)
