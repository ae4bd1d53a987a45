"""Error rates judged by bets aimed at the tolerance, re-sized at doubling snapshots (issue 14).

The groups of :mod:`meshlab.stats.bets` (shadow: the two copies of a request; canary: ``c``
candidate with ``r`` reference requests in arrival order) give ``Z`` in [-1, 1] with mean
``mu = p_cand - p_base``. Where the mixture of :mod:`meshlab.stats.bets` spreads its bets over
every size, these are sized for the decision: to test ``mu0`` from above (the lower bound; the
abort side at ``mu0`` = the abort threshold) the bet is the growth-optimal one against
``mu = mu0 + tol``; from below (the upper bound; the promote side at ``mu0`` = the tolerance)
against ``mu = mu0 - tol``. A bet's growth only rises as the truth moves past that point, so it
is also the best worst-case bet over the whole alternative beyond it (GROW: Grünwald, de Heide &
Koolen, "Safe testing", JRSS-B 86 (2024)). That bet depends on the base rate alone, which is
learnt from every reference request (concordant groups included):

    p_hat_s = (reference failures before snapshot s + w g) / (reference requests before it + w)

with the guess ``g = max(tol, 1%)`` worth ``w = 1 / g`` requests (one expected failure). Groups
are counted per *snapshot* (:func:`snapshot_of`: the first 100 groups, then each doubling), and
every group of snapshot ``s`` is bet with ``p_hat_s``, which uses only the groups before it:

    K_n(mu0) = prod_k (1 + t_{s(k)} a(Z_k)),   a(Z) = (Z - mu0) / (1 + mu0)  (above)
                                                      (mu0 - Z) / (1 - mu0)  (below)

Each bet is fixed before its group is seen, so ``K_n`` is a nonnegative supermartingale under
its null for every distribution of ``Z`` (Waudby-Smith & Ramdas, "Estimating means of bounded
random variables by betting", JRSS-B 86 (2024), section 5: predictable bets), and Ville's
inequality gives ``P(exists n: K_n >= 1/level) <= level``: the same anytime guarantee as the
mixture. ``K_n`` depends on the counts per snapshot and level alone, whenever the looks were,
so a look costs (snapshots x levels) logarithms and the replay judges every look from one
cumulative sum over the groups.

Told the base rate, the bet grows at 99.8-99.98% of the rate no e-value for the pair null can
beat (``analysis/tolerance_bets.md``). Against the mixture, error rate alone at base rates
0.2% / 1% / 5%: at the tolerance the median falls from 0.63 / 0.60 / 0.73 of the one-look size
to 0.56 / 0.52 / 0.54, p90 from 1.14 / 1.22 / 1.54 to 0.96 / 1.12 / 1.25; at 2.5x the
tolerance it is within a look of the mixture (in the joint calibration one look later, 0.19
against 0.17: a bet aimed at the tolerance under-bets a larger effect).

Shadow copies of one request often fail together, so there the nuisance is the share ``d`` of
discordant pairs (copies that disagree), learnt the same way, and the alternative puts
``(d + m) / 2`` on Z = +1 and ``(d - m) / 2`` on Z = -1 at the aim ``m`` (``copies=True``).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from meshlab.stats.bets import PAIRS, Grouping, search_edge

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

FIRST = 100  # groups in the first snapshot; then each snapshot doubles the groups seen
SNAPSHOTS = 28  # snapshot s >= 1 starts at FIRST * 2^(s - 1) groups: 28 cover 1.3e10 groups
TOP = 0.98  # the largest bet, as a share of the one that could lose everything
_SIZE_STEPS = 32  # halvings of [0, TOP] for a bet
GUARANTEE = (
    "anytime-valid: P(lower ever above the true effect) <= {a:.4g}, P(upper ever below it) <= "
    "{b:.4g} (bets aimed at the tolerance, base rate learnt at doubling snapshots; "
    "Waudby-Smith & Ramdas 2024, Grünwald et al. 2024; {how})"
)


def snapshot_of(k: npt.ArrayLike) -> IntArray:
    """The snapshot of the ``k``-th group (0-based): 0 below :data:`FIRST`, then one per doubling."""
    m = np.asarray(k, dtype=np.int64) // FIRST
    exponent = np.frexp(np.maximum(m, 1).astype(np.float64))[1]  # bit length of m
    return np.asarray(np.where(m > 0, exponent, 0), dtype=np.int64)


def edges() -> IntArray:
    """Where each snapshot starts, in groups: 0, FIRST, 2 FIRST, 4 FIRST, ... (SNAPSHOTS + 1)."""
    return np.concatenate(([0], FIRST * 2 ** np.arange(SNAPSHOTS, dtype=np.int64)))


def split(before: npt.ArrayLike, after: npt.ArrayLike) -> IntArray:
    """Groups ``before`` ... ``after`` (per replication) by snapshot: (..., SNAPSHOTS)."""
    e = edges()
    lo, hi = e[:-1], e[1:]
    b = np.asarray(before, dtype=np.int64)[..., None]
    a = np.asarray(after, dtype=np.int64)[..., None]
    return np.asarray(np.clip(a, lo, hi) - np.clip(b, lo, hi), dtype=np.int64)


def base_rates(
    counts: FloatArray, tol: float, grouping: Grouping, copies: bool = False
) -> FloatArray:
    """The nuisance each snapshot's bet is sized from (..., SNAPSHOTS), learnt from the
    snapshots before it (counts (..., SNAPSHOTS, levels)): the reference's failure rate, or for
    ``copies`` (shadow: the two copies of one request, which may fail together) the share of
    discordant pairs."""
    guess = min(max(tol, 0.01), 0.5)
    weight = 1.0 / guess
    if copies:  # PAIRS levels 1 and 2: only one copy failed
        hits, trials, prior = counts[..., 1] + counts[..., 2], counts.sum(axis=-1), 2 * guess
    else:
        kr = np.arange(grouping.levels) % (grouping.ref + 1)  # reference failures per level
        hits = counts @ kr.astype(np.float64)
        trials, prior = counts.sum(axis=-1) * grouping.ref, guess
    before_h = np.cumsum(hits, axis=-1) - hits
    before_n = np.cumsum(trials, axis=-1) - trials
    return np.asarray((before_h + weight * prior) / (before_n + weight), dtype=np.float64)


def _slopes(mu0: FloatArray, above: bool, grouping: Grouping) -> FloatArray:
    """``a(Z)`` of each level (..., levels): the factor is ``1 + t a`` with ``t`` in [0, TOP]."""
    z = grouping.values
    m = np.clip(mu0, -1 + 1e-9, 1 - 1e-9)[..., None]
    return np.asarray((z - m) / (1 + m) if above else (m - z) / (1 - m), dtype=np.float64)


def bets(
    p: FloatArray,
    mu0: FloatArray,
    tol: float,
    above: bool,
    grouping: Grouping = PAIRS,
    copies: bool = False,
) -> FloatArray:
    """The growth-optimal ``t`` (shape of ``p``; ``mu0`` broadcast) against ``mu0 +- tol``: the
    root of ``E[a / (1 + t a)] = 0`` under the alternative's levels. Independent arms: each arm
    binomial, the reference at base rate ``p``; ``copies``: Z = +1 / -1 with probabilities
    ``(d +- m) / 2`` at the discordant share ``d = p`` (at least ``|m|``), ``m`` the aim."""
    aim = max(tol, 1e-6)
    pb = np.clip(p, 0.0, 1.0)
    target = np.broadcast_to(mu0 + aim if above else mu0 - aim, pb.shape)
    if copies:
        d = np.maximum(pb, np.abs(target))
        prob = np.stack([1 - d, (d - target) / 2, (d + target) / 2, np.zeros_like(d)], axis=-1)
    else:
        pc = np.clip(pb + target, 0.0, 1.0)
        kc = np.arange(grouping.cand + 1)
        kr = np.arange(grouping.ref + 1)
        prob = (
            sps.binom.pmf(kc, grouping.cand, pc[..., None])[..., :, None]
            * sps.binom.pmf(kr, grouping.ref, pb[..., None])[..., None, :]
        ).reshape(*pb.shape, grouping.levels)
    a = _slopes(np.broadcast_to(mu0, pb.shape), above, grouping)
    lo, hi = np.zeros(pb.shape), np.full(pb.shape, TOP)
    for _ in range(_SIZE_STEPS):
        t = 0.5 * (lo + hi)
        rising = (prob * a / (1 + t[..., None] * a)).sum(axis=-1) > 0
        lo, hi = np.where(rising, t, lo), np.where(rising, hi, t)
    gain = (prob * a).sum(axis=-1) > 0  # no bet where the alternative is not past mu0
    return np.asarray(np.where(gain, lo, 0.0), dtype=np.float64)


def log_capital(
    counts: npt.ArrayLike,
    mu0: npt.ArrayLike,
    above: bool,
    tol: float,
    grouping: Grouping = PAIRS,
    copies: bool = False,
) -> FloatArray:
    """log K_n(mu0) from counts (..., SNAPSHOTS, levels); ``mu0`` broadcast over the leading
    axes."""
    c = np.asarray(counts, dtype=np.float64)
    used = np.flatnonzero(c.reshape(-1, *c.shape[-2:]).any(axis=(0, 2)))
    c = c[..., : (used[-1] + 1 if used.size else 1), :]  # later snapshots hold no group yet
    mu = np.broadcast_to(np.asarray(mu0, dtype=np.float64), c.shape[:-2])
    t = bets(base_rates(c, tol, grouping, copies), mu[..., None], tol, above, grouping, copies)
    a = _slopes(mu, above, grouping)[..., None, :]
    return np.asarray((c * np.log1p(t[..., None] * a)).sum(axis=(-2, -1)), dtype=np.float64)


def with_unmatched(counts: FloatArray, unmatched: npt.ArrayLike, grouping: Grouping) -> FloatArray:
    """Shadow: failed candidate copies still without their reference, as groups with Z = +1 in
    the snapshot the next group falls in (pessimistic: missing data can only delay a promote)."""
    u = np.asarray(unmatched, dtype=np.float64)
    if not np.any(u):
        return counts
    lead = np.broadcast_shapes(counts.shape[:-2], u.shape)
    out = np.array(np.broadcast_to(counts, lead + counts.shape[-2:]))
    current = snapshot_of(out.sum(axis=(-2, -1)))
    onehot = np.arange(SNAPSHOTS) == current[..., None]
    out[..., grouping.top] += onehot * np.broadcast_to(u, lead)[..., None]
    return out


def verdicts(
    counts: npt.ArrayLike,
    thresholds: tuple[float, float],
    alpha_share: float,
    beta: float,
    tol: float,
    grouping: Grouping = PAIRS,
    unmatched: npt.ArrayLike = 0.0,
    copies: bool = False,
) -> tuple[BoolArray, BoolArray]:
    """(fails, passes): lower bound above the abort threshold, upper bound below the tolerance
    (``thresholds``), where there is a group; ``copies``: shadow pairs (:func:`bets`)."""
    c = np.asarray(counts, dtype=np.float64)
    cap = log_capital(c, thresholds[0], True, tol, grouping, copies)
    fails = cap > math.log(1 / alpha_share)
    wide = with_unmatched(c, unmatched, grouping)
    passes = log_capital(wide, thresholds[1], False, tol, grouping, copies) > math.log(1 / beta)
    data = c.sum(axis=(-2, -1)) > 0
    return np.asarray(fails & data, dtype=np.bool_), np.asarray(passes & data, dtype=np.bool_)


def interval(
    counts: npt.ArrayLike,
    alpha_share: float,
    beta: float,
    tol: float,
    thresholds: tuple[float, float],
    grouping: Grouping = PAIRS,
    unmatched: float = 0.0,
    copies: bool = False,
) -> tuple[float, float, float]:
    """(lower, estimate, upper) of ``p_cand - p_base`` for the report from counts (SNAPSHOTS,
    levels), deciding exactly as :func:`verdicts` at the thresholds."""
    c = np.asarray(counts, dtype=np.float64)
    lo, hi = bounds(c, alpha_share, beta, tol, thresholds, grouping, unmatched, copies)
    total = c.sum(axis=0)
    n = float(total.sum())
    estimate = float(total @ grouping.values) / n if n > 0 else math.nan
    return float(lo), estimate, float(hi)


def bounds(
    counts: npt.ArrayLike,
    alpha_share: float,
    beta: float,
    tol: float,
    thresholds: tuple[float, float],
    grouping: Grouping = PAIRS,
    unmatched: npt.ArrayLike = 0.0,
    copies: bool = False,
) -> tuple[FloatArray, FloatArray]:
    """(lower, upper), vectorised over the leading axes; (-1, 1) where there is no group yet."""
    c = np.asarray(counts, dtype=np.float64)
    n = c.sum(axis=(-2, -1))
    lower = _bisect(c, alpha_share, tol, thresholds[0], True, grouping, copies)
    wide = with_unmatched(c, unmatched, grouping)
    upper = _bisect(wide, beta, tol, thresholds[1], False, grouping, copies)
    return (
        np.asarray(np.where(n > 0, lower, -1.0), dtype=np.float64),
        np.asarray(np.where(n > 0, upper, 1.0), dtype=np.float64),
    )


def _bisect(
    counts: FloatArray,
    level: float,
    tol: float,
    start: float,
    above: bool,
    grouping: Grouping,
    copies: bool,
) -> FloatArray:
    """The end of ``{mu0: K_n(mu0) <= 1/level}`` on one side, searched from ``start`` as
    :func:`meshlab.stats.bets.search_edge` does."""

    def out(mu: FloatArray) -> BoolArray:
        wide = np.broadcast_to(counts[..., None, :, :], (*mu.shape, *counts.shape[-2:]))
        cap = log_capital(wide, mu, above, tol, grouping, copies)
        return np.asarray(cap > math.log(1.0 / level), dtype=np.bool_)

    first = np.full(counts.shape[:-2], float(start))
    return search_edge(out, first, 1.0 if above else -1.0)


def sequence_verdicts(
    levels: IntArray,
    groups: IntArray,
    thresholds: tuple[float, float],
    alpha_share: float,
    beta: float,
    tol: float,
    grouping: Grouping = PAIRS,
    unmatched: npt.ArrayLike = 0.0,
    copies: bool = False,
) -> tuple[BoolArray, BoolArray]:
    """:func:`verdicts` at every look of a recorded file at once (the replay): ``levels`` is the
    level of each group in order, ``groups`` the groups each look has seen. One cumulative sum
    per side over the groups; the bets are those the counts at each look give (a snapshot's bet
    uses only the snapshots before it, complete at any look that reaches it)."""
    snap = snapshot_of(np.arange(levels.size))
    counts = np.zeros((SNAPSHOTS, grouping.levels))
    np.add.at(counts, (snap, levels), 1.0)
    rates = base_rates(counts, tol, grouping, copies)
    m = np.asarray(groups, dtype=np.int64)
    caps = []
    for mu0, above in ((thresholds[0], True), (thresholds[1], False)):
        t = bets(rates, np.asarray(mu0, dtype=np.float64), tol, above, grouping, copies)
        a = _slopes(np.asarray(mu0, dtype=np.float64), above, grouping)
        running = np.concatenate(([0.0], np.cumsum(np.log1p(t[snap] * a[levels]))))
        caps.append((running[m], t[snapshot_of(m)], a))
    (up, _, _), (down, t_next, a_down) = caps
    down = down + np.asarray(unmatched, dtype=np.float64) * np.log1p(t_next * a_down[grouping.top])
    data = m > 0
    fails = (up > math.log(1 / alpha_share)) & data
    passes = (down > math.log(1 / beta)) & data
    return np.asarray(fails, dtype=np.bool_), np.asarray(passes, dtype=np.bool_)
