"""Rates: error-rate difference between arms, paired disagreement rate, and TV distance of labels.

All three are built from one-sided bounds on Bernoulli rates, either anytime-valid (beta-binomial
mixture confidence sequences, Howard et al., Annals of Statistics 2021, section 3; the conjugate
mixture approach of Lindon & Malek, "Anytime-valid inference for multinomial count data",
NeurIPS 2022, specialised to two categories) or, for ``method: fixed-horizon``, exact
Clopper-Pearson bounds valid for a single look only.

* error-rate: effect ``p_cand - p_base``; the product of the two arms' one-sided mixtures is a
  test martingale for the pair of true rates, and the bound is the extreme difference over the
  pairs it does not reject (:func:`meshlab.stats.boundaries.difference_upper`): widths add in
  quadrature, about half the samples of a union bound over per-arm bounds. In shadow mode both
  arms see the same requests (errors may be correlated): the discordant-pair test below when
  the metric aborts on "worse", else (abort beyond the tolerance) a union bound over per-arm
  confidence sequences (each at half the level), valid under any dependence. Fixed horizon:
  Agresti-Caffo (one-sided Wald with one pseudo-success and failure per arm).
* paired disagreement (shadow): effect = the rate of pairs whose predictions differ; one
  Bernoulli sequence, lower at alpha_share, upper at beta.
* total variation (canary): effect ``TV(P_cand, P_base) = max_A P(A) - Q(A)`` over events A of
  the K prediction categories. For 2 <= K <= 6 (sequential): the two-arm difference bound for
  each of the 2^K - 2 events; TV's upper bound is
  the largest event upper bound, its lower bound the largest event lower bound; the upper bounds
  run at the full beta (intersection-union: a false promote needs the bound of the one event that
  attains TV to miss, see :data:`UPPER_PER_EVENT`), the lower bounds at alpha_share over the number
  of events (a false abort is a union over events). Otherwise: with
  4K one-sided rate bounds (two per category per arm, each at level / (4K)) holding together,
  lower = max(sum_k (L_pk - U_qk)^+, sum_k (L_qk - U_pk)^+) and
  upper = min(1, sum_k (U_pk - L_qk)^+, sum_k (U_qk - L_pk)^+, 1/2 sum_k max(U_pk - L_qk, U_qk - L_pk)).
  K is the number of categories seen so far; the union bound is exact for a fixed label set and
  approximate when new labels keep appearing (see the known weaknesses in the README).

Measured lever, not adopted by ``Comparison`` yet (:func:`ratio_lower`): the error-rate abort
side conditioned on the total count of errors (Lindon & Malek, "Anytime-valid inference for
multinomial count data", NeurIPS 2022). With requests routed to the candidate with a known
probability ``w``, independently of whether they fail, the arms of the *failing* requests are
i.i.d. Bernoulli(``pi``), ``pi = w p_c / (w p_c + (1 - w) p_b)``, and "candidate worse"
(``p_c > p_b``) is exactly ``pi > w``: one Bernoulli sequence, one mixture, a null with no
nuisance parameter, and shared bursts (both arms' rates scaled alike) leave ``pi`` unchanged.

Shadow error rate by the discordant pairs (:func:`paired_error_bounds`; ``Comparison``'s rule
until :mod:`meshlab.stats.bets` replaced it, kept for the calibration's lever table,
``Levers(shadow_bets=False)``): both arms answer the same
request, so condition on the *discordant* pairs (one arm failed, the other did not), the
sequential form of McNemar's test (McNemar, Psychometrika 1947; made anytime-valid with the
beta-binomial mixture of Howard et al. 2021 on the one Bernoulli sequence of discordant pairs,
as Lindon & Malek 2022 do for multinomial counts conditioned on their total). With ``P01``
(only the candidate failed) and ``P10`` (only the reference), ``p_c - p_b = P01 - P10 =
delta (2 theta - 1)``, ``delta`` the discordant share and ``theta = P01 / delta``. Given the
discordant pairs, their sides are i.i.d. Bernoulli(``theta``) whatever the base rate and however
the two copies' failures depend on each other, so "worse" is ``theta > 1/2``. Abort side: lower
confidence sequences for ``theta`` (at 95% of alpha_share) and ``delta`` (the other 5%:
``delta``'s lower bound is positive from the first discordant pair at any level, so the small
share costs only the reported bound's size, not time); promote side: upper ones, each at
beta / 2. Pairs that fail together (a bad request) cost nothing, where the union
bound pays for them. Candidate rows whose reference never arrived and that failed count as
candidate-only failures on the promote side (``unmatched_failures``): missing data can only
delay a promote, never buy one.

Guarantee (each): P(lower ever above the true effect) <= alpha_share and P(upper ever below it)
<= beta, under i.i.d. Bernoulli/categorical draws within each arm.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from meshlab.stats.boundaries import (
    DEFAULT_DESIGN_N,
    ArmDesign,
    difference_upper,
    per_arm,
    rate_lower,
    rate_upper,
)
from meshlab.stats.design import DESIGN_FACTOR

FloatArray = npt.NDArray[np.float64]

SEQUENTIAL_GUARANTEE = (
    "anytime-valid: P(lower ever above the true effect) <= {a:.4g}, P(upper ever below it) <= "
    "{b:.4g} (beta-binomial mixture confidence sequences, Howard et al. 2021; {how})"
)
FIXED_GUARANTEE = (
    "one look only: P(lower above the true effect) <= {a:.4g}, P(upper below it) <= {b:.4g} "
    "({how}); repeated looks inflate both"
)


def bernoulli_upper(
    s: npt.ArrayLike,
    n: npt.ArrayLike,
    level: float,
    sequential: bool,
    design_n: float = DEFAULT_DESIGN_N,
) -> FloatArray:
    """One-sided upper bound on a Bernoulli rate (anytime-valid or Clopper-Pearson)."""
    if sequential:
        return rate_upper(s, n, level, design_n)
    s_, n_ = np.broadcast_arrays(np.asarray(s, dtype=np.float64), np.asarray(n, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        bound = sps.beta.ppf(1.0 - level, s_ + 1, np.maximum(n_ - s_, 1e-300))
    return np.asarray(np.where((s_ >= n_) | (n_ == 0), 1.0, bound), dtype=np.float64)


def bernoulli_lower(
    s: npt.ArrayLike,
    n: npt.ArrayLike,
    level: float,
    sequential: bool,
    design_n: float = DEFAULT_DESIGN_N,
) -> FloatArray:
    """One-sided lower bound on a Bernoulli rate (anytime-valid or Clopper-Pearson)."""
    if sequential:
        return rate_lower(s, n, level, design_n)
    s_, n_ = np.asarray(s, dtype=np.float64), np.asarray(n, dtype=np.float64)
    return 1.0 - bernoulli_upper(n_ - s_, n_, level, sequential=False)


def rate_difference(
    s_base: npt.ArrayLike,
    n_base: npt.ArrayLike,
    s_cand: npt.ArrayLike,
    n_cand: npt.ArrayLike,
    alpha_share: float,
    beta: float,
    sequential: bool = True,
    design_n: ArmDesign = DEFAULT_DESIGN_N,
    paired: bool = False,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(lower, estimate, upper) of p_cand - p_base (estimate nan while an arm has no data).

    ``design_n``: one design size, or (base arm, candidate arm) at an unequal split
    (:func:`meshlab.stats.design.arm_designs`).

    ``paired`` (shadow: both arms see the same requests, so their errors may be correlated and
    the product of the arms' mixtures need not be a martingale): a union bound over per-arm
    confidence sequences instead, each at half the level, valid under any dependence.
    """
    sb, nb = np.asarray(s_base, dtype=np.float64), np.asarray(n_base, dtype=np.float64)
    sc, nc = np.asarray(s_cand, dtype=np.float64), np.asarray(n_cand, dtype=np.float64)
    d_base, d_cand = per_arm(design_n)
    if sequential and paired:
        design_n = d_base
        half_a, half_b = alpha_share / 2, beta / 2
        lower = rate_lower(sc, nc, half_a, design_n) - rate_upper(sb, nb, half_a, design_n)
        upper = rate_upper(sc, nc, half_b, design_n) - rate_lower(sb, nb, half_b, design_n)
    elif sequential:
        lower = -difference_upper(sb, nb, sc, nc, alpha_share, (d_base, d_cand))
        upper = difference_upper(sc, nc, sb, nb, beta, (d_cand, d_base))
    else:  # Agresti-Caffo: add one success and one failure per arm, then Wald
        pc, pb = (sc + 1) / (nc + 2), (sb + 1) / (nb + 2)
        se = np.sqrt(pc * (1 - pc) / (nc + 2) + pb * (1 - pb) / (nb + 2))
        lower = pc - pb - float(sps.norm.ppf(1 - alpha_share)) * se
        upper = pc - pb + float(sps.norm.ppf(1 - beta)) * se
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = np.where((nb > 0) & (nc > 0), sc / nc - sb / nb, np.nan)
    return (
        np.asarray(lower, dtype=np.float64),
        np.asarray(estimate, dtype=np.float64),
        np.asarray(upper, dtype=np.float64),
    )


def rate_interval(
    s: npt.ArrayLike,
    n: npt.ArrayLike,
    alpha_share: float,
    beta: float,
    sequential: bool = True,
    design_n: float = DEFAULT_DESIGN_N,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(lower, estimate, upper) of a single Bernoulli rate (paired disagreement)."""
    s_, n_ = np.asarray(s, dtype=np.float64), np.asarray(n, dtype=np.float64)
    lower = bernoulli_lower(s_, n_, alpha_share, sequential, design_n)
    upper = bernoulli_upper(s_, n_, beta, sequential, design_n)
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = np.where(n_ > 0, s_ / n_, np.nan)
    return lower, np.asarray(estimate, dtype=np.float64), upper


def ratio_lower(
    s_base: npt.ArrayLike,
    s_cand: npt.ArrayLike,
    share: float,
    level: float,
    design_errors: float,
) -> FloatArray:
    """Anytime-valid lower bound on ``p_cand / p_base`` from the errors' arms alone.

    ``share``: the known probability that a compared request goes to the candidate. The lower
    confidence sequence for ``pi`` (errors on the candidate over all errors) maps monotonically
    to the rate ratio ``rho = pi (1 - w) / (w (1 - pi))``; ``rho > 1`` iff ``pi > w``, so
    P(exists n: bound_n > true ratio) <= level under random routing, whatever the base rate.
    ``design_errors``: the mixture's design size in errors (:func:`conditional_design`).
    """
    sb, sc = np.asarray(s_base, dtype=np.float64), np.asarray(s_cand, dtype=np.float64)
    pi = rate_lower(sc, sb + sc, level, design_errors)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = pi * (1 - share) / (share * (1 - pi))
    return np.asarray(np.where(sb + sc > 0, rho, 0.0), dtype=np.float64)


PAIRED_DELTA_SHARE = 0.05  # of the abort side's alpha, to the lower bound of the discordant share


def paired_error_bounds(
    only_reference: npt.ArrayLike,
    only_candidate: npt.ArrayLike,
    pairs: npt.ArrayLike,
    alpha_share: float,
    beta: float,
    design_pairs: float,
    design_discordant: float,
    unmatched_failures: npt.ArrayLike = 0,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(lower, estimate, upper) of ``p_c - p_b`` from the discordant pairs (sequential McNemar).

    ``p_c - p_b = delta (2 theta - 1)``: ``delta`` the share of discordant pairs, ``theta`` the
    candidate-only share of them. Lower: ``L_delta (2 L_theta - 1)`` when ``L_theta > 1/2``, else
    ``2 L_theta - 1`` (``delta <= 1``), the lower sequences at alpha_share split
    :data:`PAIRED_DELTA_SHARE` to ``delta``, the rest to ``theta``, so
    P(lower ever above ``p_c - p_b``) <= alpha_share, and the lower bound is above 0 only when
    the candidate is shown worse. Upper: ``U_delta max(2 U_theta - 1, 0)`` with both upper
    sequences at beta / 2: P(ever below ``p_c - p_b``) <= beta. Valid for i.i.d. pairs under any
    dependence within a pair. ``unmatched_failures``: failed candidate rows still without their
    reference, counted on the upper side as candidate-only failures of extra pairs (pessimistic:
    the upper bound only rises).
    """
    s10 = np.asarray(only_reference, dtype=np.float64)
    s01 = np.asarray(only_candidate, dtype=np.float64)
    n = np.asarray(pairs, dtype=np.float64)
    discordant = s01 + s10
    a_delta = alpha_share * PAIRED_DELTA_SHARE
    theta_low = rate_lower(s01, discordant, alpha_share - a_delta, design_discordant)
    delta_low = rate_lower(discordant, n, a_delta, design_pairs)
    lower = np.where(theta_low > 0.5, delta_low * (2 * theta_low - 1), 2 * theta_low - 1)
    lower = np.where(discordant > 0, lower, -1.0)
    u = np.asarray(unmatched_failures, dtype=np.float64)
    delta_up = rate_upper(discordant + u, n + u, beta / 2, design_pairs)
    theta_up = rate_upper(s01 + u, discordant + u, beta / 2, design_discordant)
    upper = delta_up * np.maximum(2 * theta_up - 1, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = np.where(n > 0, (s01 - s10) / n, np.nan)
    return (
        np.asarray(lower, dtype=np.float64),
        np.asarray(estimate, dtype=np.float64),
        np.asarray(upper, dtype=np.float64),
    )


def paired_design(tolerance: float) -> float:
    """Design size in discordant pairs of :func:`paired_error_bounds`' ``theta`` sequences."""
    return conditional_design(tolerance, 0.5, DESIGN_FACTOR)


def conditional_design(tolerance: float, share: float, factor: float) -> float:
    """Design size in errors of :func:`ratio_lower`: ``factor / scale^2``, ``scale`` the move of
    ``pi`` at the tolerance (base rate ``max(tolerance, 1%)``) in Bernoulli standard deviations."""
    p_b = max(tolerance, 0.01)
    p_c = p_b + tolerance
    pi = share * p_c / (share * p_c + (1 - share) * p_b)
    scale = (pi - share) / np.sqrt(share * (1 - share))
    return float(max(factor / scale**2, 50.0))


MAX_SET_CATEGORIES = 6  # up to 2^6 - 2 = 62 event bounds; beyond, per-category bounds
# The promote side of TV needs no correction over events (intersection-union): a false promote
# needs max_A U_A < TV = P(A*) - Q(A*) for the event A* that attains TV, so U_A* < its own true
# difference, which has probability <= beta. Only the abort side (max_A L_A > TV) is a union over
# events and keeps Bonferroni. False switches it back to beta / events (the first version).
UPPER_PER_EVENT = True


def _subsets(k: int) -> npt.NDArray[np.float64]:
    """Indicator rows of every non-empty proper subset of k categories, (2^k - 2, k)."""
    codes = np.arange(1, 2**k - 1)
    return np.asarray((codes[:, None] >> np.arange(k)) & 1, dtype=np.float64)


def tv_interval(
    counts_base: npt.ArrayLike,
    counts_cand: npt.ArrayLike,
    alpha_share: float,
    beta: float,
    sequential: bool = True,
    design_n: ArmDesign = DEFAULT_DESIGN_N,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(lower, estimate, upper) of the TV distance from category counts of shape (..., K).

    ``design_n``: one design size, or (base arm, candidate arm) at an unequal split.
    """
    q = np.asarray(counts_base, dtype=np.float64)
    p = np.asarray(counts_cand, dtype=np.float64)
    k = max(int(p.shape[-1]), 1)
    nq, np_ = q.sum(axis=-1, keepdims=True), p.sum(axis=-1, keepdims=True)
    if sequential and 2 <= k <= MAX_SET_CATEGORIES:
        lower, upper = _tv_by_events(q, p, nq, np_, alpha_share, beta, design_n)
    else:
        lower, upper = _tv_by_categories(q, p, nq, np_, alpha_share, beta, sequential, design_n)
    empty = (nq[..., 0] == 0) | (np_[..., 0] == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Sorted before summing: the labels' order (first seen) must not change the rounding.
        est = 0.5 * np.sort(np.abs(p / np_ - q / nq), axis=-1).sum(axis=-1)
    return (
        np.asarray(np.where(empty, 0.0, lower), dtype=np.float64),
        np.asarray(np.where(empty, np.nan, est), dtype=np.float64),
        np.asarray(np.where(empty, 1.0, upper), dtype=np.float64),
    )


def _tv_by_events(
    q: FloatArray,
    p: FloatArray,
    nq: FloatArray,
    np_: FloatArray,
    alpha_share: float,
    beta: float,
    design_n: ArmDesign,
) -> tuple[FloatArray, FloatArray]:
    """TV = max over events A of P(A) - Q(A): difference bounds per event, Bonferroni over events."""
    d_base, d_cand = per_arm(design_n)
    sets = _subsets(p.shape[-1])
    pa, qa = p @ sets.T, q @ sets.T  # (..., events)
    events = sets.shape[0]
    up_level = beta if UPPER_PER_EVENT else beta / events
    upper = difference_upper(pa, np_, qa, nq, up_level, (d_cand, d_base)).max(axis=-1)
    lower = (-difference_upper(qa, nq, pa, np_, alpha_share / events, (d_base, d_cand))).max(
        axis=-1
    )
    return np.clip(lower, 0.0, 1.0), np.clip(upper, 0.0, 1.0)


def _tv_by_categories(
    q: FloatArray,
    p: FloatArray,
    nq: FloatArray,
    np_: FloatArray,
    alpha_share: float,
    beta: float,
    sequential: bool,
    design_n: ArmDesign,
) -> tuple[FloatArray, FloatArray]:
    """TV from per-category rate bounds, Bonferroni over 4K one-sided bounds."""
    k = max(int(p.shape[-1]), 1)
    d_base, d_cand = per_arm(design_n)

    def bounds(level: float) -> tuple[FloatArray, ...]:
        each = level / (4 * k)
        return (
            bernoulli_lower(p, np_, each, sequential, d_cand),
            bernoulli_upper(p, np_, each, sequential, d_cand),
            bernoulli_lower(q, nq, each, sequential, d_base),
            bernoulli_upper(q, nq, each, sequential, d_base),
        )

    lp, up, lq, uq = bounds(alpha_share)
    lower = np.maximum(
        np.clip(lp - uq, 0, None).sum(axis=-1), np.clip(lq - up, 0, None).sum(axis=-1)
    )
    lp, up, lq, uq = bounds(beta)
    x, y = up - lq, uq - lp
    upper = np.minimum.reduce(
        [
            np.ones_like(lower),
            np.clip(x, 0, None).sum(axis=-1),
            np.clip(y, 0, None).sum(axis=-1),
            0.5 * np.maximum(x, y).sum(axis=-1),
        ]
    )
    return np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
