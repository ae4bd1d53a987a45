"""Rates: error-rate difference between arms, paired disagreement rate, and TV distance of labels.

All three are built from one-sided bounds on Bernoulli rates, either anytime-valid (beta-binomial
mixture confidence sequences, Howard et al., Annals of Statistics 2021, section 3; the conjugate
mixture approach of Lindon & Malek, "Anytime-valid inference for multinomial count data",
NeurIPS 2022, specialised to two categories) or, for ``method: fixed-horizon``, exact
Clopper-Pearson bounds valid for a single look only.

* error-rate: effect ``p_cand - p_base``; lower = L_cand - U_base (each at alpha_share / 2),
  upper = U_cand - L_base (each at beta / 2). Union bound over the two arms.
* paired disagreement (shadow): effect = the rate of pairs whose predictions differ; one
  Bernoulli sequence, lower at alpha_share, upper at beta.
* total variation (canary): effect ``TV(P_cand, P_base) = sum_k (p_k - q_k)^+`` over the K
  prediction categories. With 4K one-sided rate bounds (two per category per arm, Bonferroni:
  each at level / (4K)) holding simultaneously,
  lower = max(sum_k (L_pk - U_qk)^+, sum_k (L_qk - U_pk)^+) and
  upper = min(1, sum_k (U_pk - L_qk)^+, sum_k (U_qk - L_pk)^+, 1/2 sum_k max(U_pk - L_qk, U_qk - L_pk)).
  K is the number of categories seen so far; the union bound is exact for a fixed label set and
  approximate when new labels keep appearing (see the known weaknesses in the README).

Guarantee (each): P(lower ever above the true effect) <= alpha_share and P(upper ever below it)
<= beta, under i.i.d. Bernoulli/categorical draws within each arm.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from meshlab.stats.boundaries import DEFAULT_DESIGN_N, rate_lower, rate_upper

FloatArray = npt.NDArray[np.float64]

SEQUENTIAL_GUARANTEE = (
    "anytime-valid: P(lower ever above the true effect) <= {a:.4g}, P(upper ever below it) <= "
    "{b:.4g} (beta-binomial mixture confidence sequences, Howard et al. 2021; {how})"
)
FIXED_GUARANTEE = (
    "one look only: P(lower above the true effect) <= {a:.4g}, P(upper below it) <= {b:.4g} "
    "(Clopper-Pearson; {how}); repeated looks inflate both"
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
    design_n: float = DEFAULT_DESIGN_N,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(lower, estimate, upper) of p_cand - p_base; (-1, nan, 1) while an arm has no data."""
    sb, nb = np.asarray(s_base, dtype=np.float64), np.asarray(n_base, dtype=np.float64)
    sc, nc = np.asarray(s_cand, dtype=np.float64), np.asarray(n_cand, dtype=np.float64)
    lower = bernoulli_lower(sc, nc, alpha_share / 2, sequential, design_n) - bernoulli_upper(
        sb, nb, alpha_share / 2, sequential, design_n
    )
    upper = bernoulli_upper(sc, nc, beta / 2, sequential, design_n) - bernoulli_lower(
        sb, nb, beta / 2, sequential, design_n
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = np.where((nb > 0) & (nc > 0), sc / nc - sb / nb, np.nan)
    return lower, np.asarray(estimate, dtype=np.float64), upper


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


def tv_interval(
    counts_base: npt.ArrayLike,
    counts_cand: npt.ArrayLike,
    alpha_share: float,
    beta: float,
    sequential: bool = True,
    design_n: float = DEFAULT_DESIGN_N,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(lower, estimate, upper) of the TV distance from category counts of shape (..., K)."""
    q = np.asarray(counts_base, dtype=np.float64)
    p = np.asarray(counts_cand, dtype=np.float64)
    k = max(int(p.shape[-1]), 1)
    nq, np_ = q.sum(axis=-1, keepdims=True), p.sum(axis=-1, keepdims=True)

    def bounds(level: float) -> tuple[FloatArray, ...]:
        each = level / (4 * k)
        return (
            bernoulli_lower(p, np_, each, sequential, design_n),
            bernoulli_upper(p, np_, each, sequential, design_n),
            bernoulli_lower(q, nq, each, sequential, design_n),
            bernoulli_upper(q, nq, each, sequential, design_n),
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
    empty = (nq[..., 0] == 0) | (np_[..., 0] == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        est = 0.5 * np.abs(p / np_ - q / nq).sum(axis=-1)
    return (
        np.asarray(np.where(empty, 0.0, lower), dtype=np.float64),
        np.asarray(np.where(empty, np.nan, est), dtype=np.float64),
        np.asarray(np.where(empty, 1.0, upper), dtype=np.float64),
    )
