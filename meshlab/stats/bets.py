"""Error rates judged by betting on paired requests (issue 14's adopted lever for errors).

Shadow: the two copies of a request (paired by ``request_id``) form a pair. Canary: the k-th
candidate request and the k-th reference request (in the order the rows arrive) form a pair.
Either way ``Z_k = 1{candidate failed} - 1{reference failed}`` lies in [-1, 1]
with mean ``mu = p_cand - p_base``, whatever the base rate and however the two members of a pair
depend on each other (shadow copies of one request often fail together; such a pair is Z = 0
and costs nothing). Canary routing is random and independent of the outcome, so its pairs are
i.i.d. when each arm's requests are. A mean ``mu0`` is tested by a
mixture of constant bets (Waudby-Smith & Ramdas, "Estimating means of bounded random variables
by betting", JRSS-B 86 (2024), sections 3-4):

    K_n(mu0) = sum_j w_j prod_k (1 + lambda_j (Z_k - mu0)),

each product a nonnegative martingale with mean 1 for *every* distribution of Z with mean
``mu0`` (``E[1 + lambda (Z - mu0)] = 1``), so the mixture is one too, and by Ville's inequality
``P(exists n: K_n(mu0) >= 1/level) <= level``: a confidence sequence valid at every look, with
no nuisance parameter (the product of two arms' mixtures, :func:`meshlab.stats.boundaries.
difference_upper`, pays a mixture cost per arm for the unknown base rate). Because Z takes only
the values +1, -1 and 0, ``K_n`` depends on the three counts alone, so a look costs
:data:`BETS` logarithms.

Bets: ``lambda_j = t_j / (1 + mu0)`` (betting that the mean is above ``mu0``; lower bounds) or
``-t_j / (1 - mu0)`` (below; upper bounds), ``t_j`` on a uniform grid of :data:`BETS` points in
(0, 0.98], weights ``w_j`` proportional to ``exp(-t_j^2 / (2 s^2))`` with ``s`` tuned before any
data to the tolerance (:func:`bet_scale`: the growth-optimal bet against an effect at the
tolerance is about ``tol / Var Z``). With this parametrisation ``K_n(mu0)`` is monotone in
``mu0`` (decreasing for the "above" bets, increasing for "below"), so the confidence set is an
interval and "lower bound > t" is exactly ``K_n(t) > 1/alpha`` for the "above" bets: decisions
need one capital, and bounds are found by bisection only for the report.

Guarantee (each side): P(lower ever above ``p_cand - p_base``) <= alpha_share and P(upper ever
below it) <= beta, for i.i.d. pairs (canary: i.i.d. requests within each arm, in an arrival
order that does not depend on their outcomes). Measured against the product of the two arms'
mixtures (``analysis/paired_bets.md``, errors alone over the one-look size, median / p90): A/A
at an even split 0.45 / 0.83 -> 0.36 / 0.79, at the tolerance 0.74 / 1.48 -> 0.62 / 1.26, at
2.5x 0.24 -> 0.17; shadow errors at the tolerance 0.57 / 0.67 (sequential McNemar) -> 0.24 /
0.33 in the calibration's lever table. A canary pairs only ``min(n_cand, n_ref)`` requests, so
it uses the bets only at a planned share within :data:`BALANCED`. Prometheus pseudo-samples (a
window's failures listed together: their order is not random) keep the product bound
(``Comparison(paired_bets=False)``).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.special import logsumexp

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

BETS = 200  # grid points of the mixture over bet sizes
# Canary pairs use min(n_cand, n_ref) pairs, so at a candidate share w < 1/2 the mean of Z has
# 2 (1 - w) times the variance of the two-arm difference: beyond this band of planned shares the
# product of the arms' mixtures (tuned per arm, design.arm_designs) needs fewer requests than the
# bets' ~1.25x gain at an even split buys back (analysis/calibration.py: A/A at 5% p90 1.08
# with the product against 1.19 with bets).
BALANCED = (0.375, 0.625)
_T = np.linspace(0.98 / BETS, 0.98, BETS)
_BISECT = 48  # halvings of [-1, 1] for a reported bound (resolution 2^-47)
GUARANTEE = (
    "anytime-valid: P(lower ever above the true effect) <= {a:.4g}, P(upper ever below it) <= "
    "{b:.4g} (mixture of constant bets on paired requests, Waudby-Smith & Ramdas 2024; {how})"
)


def pairs_pay(candidate_share: float | None) -> bool:
    """Whether a canary pairs its requests for the bets at this planned candidate share of the
    compared requests (None: not known in advance, taken as even)."""
    share = 0.5 if candidate_share is None else candidate_share
    return BALANCED[0] <= share <= BALANCED[1]


def bet_scale(tolerance: float) -> float:
    """The prior scale ``s`` of the bets: ``tol / Var Z`` at a base rate ``max(tol, 1%)``."""
    p = min(max(tolerance, 0.01), 0.5)
    return float(max(tolerance, 1e-6) / (2 * p * (1 - p)))


def log_capital(
    plus: npt.ArrayLike,
    minus: npt.ArrayLike,
    pairs: npt.ArrayLike,
    mu: npt.ArrayLike,
    above: bool,
    scale: float,
) -> FloatArray:
    """log K_n(mu) from the counts of pairs with Z = +1, Z = -1 and all pairs (broadcast).

    ``above``: the bets that the mean exceeds ``mu`` (large when ``mu`` is too low: lower
    bounds); else the bets that it is below (upper bounds).
    """
    up = np.asarray(plus, dtype=np.float64)[..., None]
    down = np.asarray(minus, dtype=np.float64)[..., None]
    zero = np.asarray(pairs, dtype=np.float64)[..., None] - up - down
    m = np.clip(np.asarray(mu, dtype=np.float64), -1.0 + 1e-9, 1.0 - 1e-9)[..., None]
    weights = -0.5 * (_T / scale) ** 2
    weights = weights - logsumexp(weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        # above: lambda = t / (1 + mu), each factor 1 + t (Z - mu) / (1 + mu) > 0; below: -t / (1 - mu)
        lam = _T / (1.0 + m) if above else -_T / (1.0 - m)
        growth = (
            special_xlog1py(up, lam * (1.0 - m))
            + special_xlog1py(down, lam * (-1.0 - m))
            + special_xlog1py(zero, -lam * m)
        )
        out = logsumexp(growth + weights, axis=-1)
    return np.asarray(np.where(np.isnan(out), -np.inf, out), dtype=np.float64)


def special_xlog1py(count: FloatArray, x: FloatArray) -> FloatArray:
    """``count * log1p(x)``, 0 where ``count`` is 0 (even where ``log1p(x)`` is -inf)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(count > 0, count * np.log1p(x), 0.0), dtype=np.float64)


def rejected(
    plus: npt.ArrayLike,
    minus: npt.ArrayLike,
    pairs: npt.ArrayLike,
    mu: npt.ArrayLike,
    level: float,
    scale: float,
    above: bool,
) -> BoolArray:
    """Where ``mu`` is outside the confidence set at ``level``: ``K_n(mu) > 1/level``.

    ``above`` (bets on a mean above ``mu``): the lower bound is above ``mu``; else the upper
    bound is below it.
    """
    cap = log_capital(plus, minus, pairs, mu, above, scale)
    return np.asarray(cap > math.log(1.0 / level), dtype=np.bool_)


def verdicts(
    plus: npt.ArrayLike,
    minus: npt.ArrayLike,
    pairs: npt.ArrayLike,
    thresholds: tuple[float, float],
    alpha_share: float,
    beta: float,
    scale: float,
    unmatched: npt.ArrayLike = 0.0,
) -> tuple[BoolArray, BoolArray]:
    """(fails, passes): lower bound above the abort threshold, upper bound below the tolerance
    (``thresholds``), where there is a pair; ``unmatched`` as in :func:`bet_bounds`."""
    n = np.asarray(pairs, dtype=np.float64)
    u = np.asarray(unmatched, dtype=np.float64)
    fails = rejected(plus, minus, n, thresholds[0], alpha_share, scale, True)
    up = np.asarray(plus, dtype=np.float64) + u
    passes = rejected(up, minus, n + u, thresholds[1], beta, scale, False)
    data = n > 0
    return fails & data, passes & data


def bet_interval(
    plus: float,
    minus: float,
    pairs: float,
    alpha_share: float,
    beta: float,
    scale: float,
    thresholds: tuple[float, float],
    unmatched: float = 0.0,
) -> tuple[float, float, float]:
    """(lower, estimate, upper) of ``p_cand - p_base`` for the report (see :func:`bet_bounds`)."""
    lower, upper = bet_bounds(plus, minus, pairs, alpha_share, beta, scale, thresholds, unmatched)
    estimate = (plus - minus) / pairs if pairs > 0 else math.nan
    return float(lower), estimate, float(upper)


def bet_bounds(
    plus: npt.ArrayLike,
    minus: npt.ArrayLike,
    pairs: npt.ArrayLike,
    alpha_share: float,
    beta: float,
    scale: float,
    thresholds: tuple[float, float],
    unmatched: npt.ArrayLike = 0.0,
) -> tuple[FloatArray, FloatArray]:
    """(lower, upper) confidence bounds, vectorised; (-1, 1) where there is no pair yet.

    ``thresholds`` = (abort threshold, tolerance): the bisection starts at them, so "lower >
    abort threshold" and "upper < tolerance" hold exactly where :func:`rejected` says so. ``unmatched`` (shadow): failed candidate copies still without
    their reference, counted on the upper side only as pairs with Z = +1 (pessimistic: missing
    data can only delay a promote).
    """
    n = np.asarray(pairs, dtype=np.float64)
    u = np.asarray(unmatched, dtype=np.float64)
    p = np.asarray(plus, dtype=np.float64)
    lower = _bisect(p, minus, n, alpha_share, scale, thresholds[0], True)
    upper = _bisect(p + u, minus, n + u, beta, scale, thresholds[1], False)
    return (
        np.asarray(np.where(n > 0, lower, -1.0), dtype=np.float64),
        np.asarray(np.where(n > 0, upper, 1.0), dtype=np.float64),
    )


def _bisect(
    plus: npt.ArrayLike,
    minus: npt.ArrayLike,
    pairs: FloatArray,
    level: float,
    scale: float,
    start: float,
    above: bool,
) -> FloatArray:
    """The end of the confidence set ``{mu: K_n(mu) <= 1/level}`` on one side.

    Above-bets reject every ``mu`` below some L (the set is ``[L, 1]``): L is returned, above
    ``start`` exactly where ``K_n(start) > 1/level``; below-bets: ``[-1, U]``, U below ``start``
    exactly where ``K_n(start) > 1/level``. Each result is a rejected ``mu`` within 2^-47 of
    the set (conservative), or the range's end where nothing on that side is rejected.
    """

    def out(mu: FloatArray) -> BoolArray:
        return rejected(plus, minus, pairs, mu, level, scale, above)

    shape = np.broadcast_shapes(np.shape(plus), np.shape(minus), pairs.shape)
    first = np.full(shape, float(start))
    end = 1.0 if above else -1.0
    start_rejected = out(first)
    inside = np.where(start_rejected, end, first)  # a mu inside the set
    outside = np.where(start_rejected, first, -end)  # a rejected mu (or the range's far end)
    for _ in range(_BISECT):
        mid = 0.5 * (inside + outside)
        r = out(mid)
        outside = np.where(r, mid, outside)
        inside = np.where(r, inside, mid)
    # strictly beyond ``start`` where start is rejected, so the report decides as the capital does
    nudged = np.nextafter(first, inside)
    return np.asarray(
        np.where(start_rejected & (outside == first), nudged, outside), dtype=np.float64
    )


def batch_order(
    timestamp: npt.ArrayLike,
    request_id: npt.ArrayLike,
    failed: npt.ArrayLike,
    batch: npt.ArrayLike | None = None,
) -> npt.NDArray[np.intp]:
    """The order rows of one batch are paired in: start time, then request id (then outcome,
    for rows equal in both), so the verdict does not depend on the order within a batch and
    a samples file (start-time order) pairs as a live run that received it in one batch. Start
    times and ids do not depend on a request's outcome, so the pairs stay i.i.d. ``batch``: the
    batch of each row, for rows of several batches at once (the replay's looks)."""
    keys = [np.asarray(failed), np.asarray(request_id), np.asarray(timestamp)]
    return np.lexsort(keys if batch is None else [*keys, np.asarray(batch)])


class ArrivalPairs:
    """The counts of Z over the pairs formed so far: the k-th candidate row with the k-th
    reference row, in the order rows are added (:meth:`add` keeps the longer arm's surplus
    waiting for its mates, in chunks, so a 5% canary's waiting reference rows are never
    copied again)."""

    def __init__(self) -> None:
        self.plus = self.minus = self.pairs = 0
        self._chunks: list[BoolArray] = []  # the waiting rows of one arm, oldest first
        self._head = 0  # rows of the first chunk already paired
        self._arm = 0  # whose rows are waiting

    def add(self, arm: npt.NDArray[np.integer], failed: BoolArray) -> None:
        """Rows in order: ``arm`` 0 (reference) or 1 (candidate), ``failed`` per row."""
        new = (failed[arm == 0], failed[arm == 1])
        waiting = sum(c.size for c in self._chunks) - self._head
        have = [new[0].size, new[1].size]
        have[self._arm] += waiting
        m = min(have)
        if m:
            mine = self._take(m, new[self._arm])
            other = new[1 - self._arm][:m]
            ref, cand = (mine, other) if self._arm == 0 else (other, mine)
            self.plus += int(np.count_nonzero(cand & ~ref))
            self.minus += int(np.count_nonzero(~cand & ref))
            self.pairs += m
        rest = new[1 - self._arm][m:]
        if rest.size:  # the other arm is ahead now (nothing of ours is left waiting)
            self._chunks, self._head, self._arm = [rest], 0, 1 - self._arm
        else:
            used = max(m - waiting, 0)
            if new[self._arm].size > used:
                self._chunks.append(new[self._arm][used:])

    def _take(self, m: int, fresh: BoolArray) -> BoolArray:
        """The next ``m`` rows of the waiting arm: the waiting ones first, then ``fresh``."""
        out: list[BoolArray] = []
        need = m
        while need and self._chunks:
            chunk = self._chunks[0][self._head :]
            piece = chunk[:need]
            out.append(piece)
            need -= piece.size
            if piece.size == chunk.size:
                self._chunks.pop(0)
                self._head = 0
            else:
                self._head += piece.size
        if need:
            out.append(fresh[:need])
        return np.concatenate(out) if len(out) > 1 else out[0]


def pairs_at(
    arm: npt.NDArray[np.integer], failed: BoolArray, n_ref: npt.ArrayLike, n_cand: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(plus, minus, pairs) at each look whose arms have ``n_ref`` and ``n_cand`` rows, pairing
    the rows ``arm``/``failed`` (in order) exactly as :class:`ArrivalPairs` does."""
    ref, cand = failed[arm == 0], failed[arm == 1]
    m = min(ref.size, cand.size)
    plus = np.concatenate(([0], np.cumsum(cand[:m] & ~ref[:m])))
    minus = np.concatenate(([0], np.cumsum(~cand[:m] & ref[:m])))
    k = np.minimum(np.asarray(n_ref, dtype=np.int64), np.asarray(n_cand, dtype=np.int64))
    return (
        plus[k].astype(np.float64),
        minus[k].astype(np.float64),
        k.astype(np.float64),
    )
