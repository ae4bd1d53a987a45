"""One-sided anytime-valid bounds for Bernoulli rates: the truncated beta-binomial mixture martingale.

Every sequential rule in meshlab reduces to this one primitive. For i.i.d. Bernoulli(``p``)
indicators with running count ``S`` after ``n`` draws, and a prior ``Beta(m p, m (1-p))`` truncated
to alternatives ``r > p`` (or ``r < p``), the mixture likelihood ratio

    M_n(p) = int (r/p)^S ((1-r)/(1-p))^(n-S) dPrior(r)
           = B(a+S, b+n-S) P_post(r > p) / (B(a, b) P_prior(r > p) p^S (1-p)^(n-S))

is a nonnegative martingale with ``M_0 = 1`` under the null rate ``p`` (and a supermartingale
when the true rate lies on the other side of ``p``). Ville's inequality gives
``P(exists n: M_n(p) >= 1/level) <= level``: the bounds below hold *simultaneously over every
sample size*, so they may be checked after every request without inflating the error rate.

References: Howard, Ramdas, McAuliffe & Sekhon, "Time-uniform, nonparametric, nonasymptotic
confidence sequences", Annals of Statistics 49 (2021), section 3 (beta-binomial mixture);
Howard & Ramdas, "Sequential estimation of quantiles with applications to A/B-testing and
best-arm identification", Bernoulli 28 (2022), Theorem 1 (the same boundary for a fixed quantile).

The prior's effective size ``m`` tunes at which sample size the bound is tightest
(``m = n_opt / (2 log(1/level) + log(1 + 2 log(1/level)))``, Howard et al. 2021, eq. 3.22);
validity does not depend on it. All functions are vectorised over their array arguments.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import special

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DEFAULT_DESIGN_N = 2000
_EPS = 1e-12
# The difference grids: 128 points over +-6 standard errors (cells 0.1 SE wide). The bound is the
# largest difference over feasible *cells*, so a cell's width is pure slack; 64 points over +-8 SE
# (the first version) cost about 15% more requests at the tolerance (analysis/calibration.py).
_DENSE = 6.0  # half-width, in standard errors, of the dense part of the difference grids
GRID_POINTS = 128
_GUARD = 0.02  # weight of the opposite-side mixture in the difference bounds


# A two-arm bound's design: one size for both arms, or (high arm, low arm) when their sample
# sizes differ (an unequal split: each arm's mixture tightest near its own expected size).
ArmDesign = float | tuple[float, float]


def prior_size(level: float, design_n: float) -> float:
    """Effective prior sample size that makes a level-``level`` bound tightest near ``design_n``."""
    log_term = 2.0 * np.log(1.0 / level)
    return float(max(1.0, design_n / (log_term + np.log1p(log_term))))


def per_arm(design: ArmDesign) -> tuple[float, float]:
    """A two-arm design as one size per arm, in the order it was given."""
    return design if isinstance(design, tuple) else (design, design)


def arm_priors(level: float, design: ArmDesign) -> tuple[float, float]:
    """The (high arm, low arm) prior sizes of a two-arm bound's design (see :data:`ArmDesign`)."""
    high, low = per_arm(design)
    return prior_size(level, high), prior_size(level, low)


def log_mixture(
    successes: npt.ArrayLike, n: npt.ArrayLike, p: npt.ArrayLike, m: float, upper: bool
) -> FloatArray:
    """log M_n(p) of the beta-binomial mixture over alternatives above (``upper``) or below ``p``."""
    s = np.asarray(successes, dtype=np.float64)
    t = np.asarray(n, dtype=np.float64)
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    a, b = m * q, m * (1.0 - q)
    with np.errstate(divide="ignore", invalid="ignore"):
        if upper:
            post = special.betainc(b + t - s, a + s, 1.0 - q)  # P_post(r > p)
            prior = special.betainc(b, a, 1.0 - q)
        else:
            post = special.betainc(a + s, b + t - s, q)  # P_post(r < p)
            prior = special.betainc(a, b, q)
        out = (
            special.betaln(a + s, b + t - s)
            - special.betaln(a, b)
            + np.log(post)
            - np.log(prior)
            - s * np.log(q)
            - (t - s) * np.log1p(-q)
        )
    out = np.where(np.isnan(out), -np.inf, out)
    # The data have zero likelihood under p = 0 with a success or p = 1 with a failure.
    raw = np.asarray(p, dtype=np.float64)
    impossible = ((raw <= 0.0) & (s > 0)) | ((raw >= 1.0) & (t - s > 0))
    return np.asarray(np.where(impossible, np.inf, out), dtype=np.float64)


def rate_upper(
    successes: npt.ArrayLike, n: npt.ArrayLike, level: float, design_n: float = DEFAULT_DESIGN_N
) -> FloatArray:
    """Upper confidence sequence for a Bernoulli rate: P(exists n: rate > bound_n) <= level.

    The bound is the largest ``p`` not rejected by the lower-alternative mixture; 1 when ``n == 0``.
    """
    s = np.asarray(successes, dtype=np.float64)
    t = np.asarray(n, dtype=np.float64)
    s, t = np.broadcast_arrays(s, t)
    m, threshold = prior_size(level, design_n), np.log(1.0 / level)
    lo = np.where(t > 0, s / np.maximum(t, 1.0), 0.0)  # never rejected: the mixture is <= 1 here
    hi = np.ones_like(lo)
    for _ in range(36):  # bisection to ~1e-11; M_n(p) grows with p above the empirical rate
        mid = 0.5 * (lo + hi)
        reject = log_mixture(s, t, mid, m, upper=False) >= threshold
        hi = np.where(reject, mid, hi)
        lo = np.where(reject, lo, mid)
    return np.asarray(np.where(t > 0, hi, 1.0), dtype=np.float64)


def rate_lower(
    successes: npt.ArrayLike, n: npt.ArrayLike, level: float, design_n: float = DEFAULT_DESIGN_N
) -> FloatArray:
    """Lower confidence sequence for a Bernoulli rate: P(exists n: rate < bound_n) <= level."""
    s = np.asarray(successes, dtype=np.float64)
    t = np.asarray(n, dtype=np.float64)
    return 1.0 - rate_upper(t - s, t, level, design_n)


def order_index_lower(
    n: npt.ArrayLike, p: float, level: float, design_n: float = DEFAULT_DESIGN_N
) -> IntArray:
    """1-based order-statistic index ``l_n`` with P(exists n: Q(p) < X_(l_n)) <= level.

    ``Q(p) < X_(l)`` means fewer than ``l`` of the ``n`` draws are ``<= Q(p)``, a count that is
    stochastically at least Binomial(n, p); ``l_n`` is the smallest count the lower-alternative
    mixture does not reject. 0 means "no finite bound yet" (use the support's lower end).
    """
    shape = np.shape(n)
    t = np.asarray(n, dtype=np.int64).reshape(-1)
    m, threshold = prior_size(level, design_n), np.log(1.0 / level)
    full = np.ceil(p * t).astype(np.int64)  # never rejected: at or above the mean
    lo, hi = _warm_bracket(t, p, m, threshold, full)
    act = np.flatnonzero(hi - lo > 1)
    for _ in range(64):  # bisection on the unconverged entries only
        if act.size == 0:
            break
        mid = (lo[act] + hi[act]) // 2
        reject = log_mixture(mid, t[act], p, m, upper=False) >= threshold
        lo[act] = np.where(reject, mid, lo[act])
        hi[act] = np.where(reject, hi[act], mid)
        act = act[hi[act] - lo[act] > 1]
    # lo is the largest rejected count (or 0); counts below l = lo + 1 are all rejected.
    first_ok = np.where(log_mixture(np.zeros_like(t), t, p, m, upper=False) < threshold, 0, lo + 1)
    return np.asarray(np.where(t > 0, first_ok, 0), dtype=np.int64).reshape(shape)


def _warm_bracket(
    t: IntArray, p: float, m: float, threshold: float, full: IntArray
) -> tuple[IntArray, IntArray]:
    """A narrow (rejected or 0, not rejected) bracket of the boundary count, checked.

    The guess is the normal approximation of the mixture boundary, ``p t - r sd`` with
    ``r^2 = 2 threshold + log((t + m) / m)``; where either end fails its check the full bracket
    ``(0, ceil(p t))`` is used, so the bisection's answer is the same either way (the rejected
    counts are exactly those below the answer).
    """
    tf = t.astype(np.float64)
    sd = np.sqrt(p * (1 - p) * tf)
    r = np.sqrt(2 * threshold + np.log1p(tf / m))
    guess = p * tf - r * sd
    lo = np.clip(np.floor(guess - 3 - 0.3 * sd), 0, full).astype(np.int64)
    hi = np.clip(np.ceil(guess + 3 + 0.3 * sd), 0, full).astype(np.int64)
    hi = np.maximum(hi, np.minimum(lo + 1, full))
    check = log_mixture(np.concatenate((lo, hi)), np.concatenate((t, t)), p, m, upper=False)
    lo_ok = (lo == 0) | (check[: t.size] >= threshold)
    hi_ok = (hi == full) | (check[t.size :] < threshold)
    return (
        np.asarray(np.where(lo_ok, lo, 0), dtype=np.int64),
        np.asarray(np.where(hi_ok, hi, full), dtype=np.int64),
    )


def order_index_upper(
    n: npt.ArrayLike, p: float, level: float, design_n: float = DEFAULT_DESIGN_N
) -> IntArray:
    """1-based order-statistic index ``u_n`` with P(exists n: Q(p) > X_(u_n)) <= level.

    ``Q(p) > X_(u)`` means at least ``u`` draws are ``< Q(p)``, a count stochastically at most
    Binomial(n, p). ``u_n > n`` means "no finite bound yet" (use the support's upper end).
    """
    t = np.asarray(n, dtype=np.int64)
    # By symmetry: draws < Q(p) counted from the top are draws > Q(p) with rate 1 - p.
    below = order_index_lower(t, 1.0 - p, level, design_n)
    return np.asarray(t + 1 - below, dtype=np.int64)


def _local_grid(successes: FloatArray, n: FloatArray, points: int) -> FloatArray:
    """Multiples of 1/32 plus a grid dense around the empirical rate (in standard errors), (..., G)."""
    t = np.maximum(n, 1.0)
    rate = successes / t
    se = np.sqrt(np.maximum(rate * (1.0 - rate), 1.0 / t) / t)
    tails = np.array([9.0, 10.0, 12.0, 15.0, 20.0, 30.0, 50.0, 100.0, 200.0, 500.0])
    z = np.concatenate((-tails[::-1], np.linspace(-_DENSE, _DENSE, points), tails))
    inner = np.clip(rate[..., None] + se[..., None] * z, 0.0, 1.0)
    # Fixed points 1/32 apart keep every cell narrow when the tails are far apart (small n).
    ends = np.broadcast_to(np.linspace(0.0, 1.0, 33), (*rate.shape, 33))
    return np.sort(np.concatenate((ends, inner), axis=-1), axis=-1)


def _interval_floor(
    s: FloatArray, n: FloatArray, grid: FloatArray, m: float, main_upper: bool
) -> FloatArray:
    """Lower bound of log((1-w) M_main + w M_other) on each grid interval [g_i, g_(i+1)].

    ``M_main`` is the one-sided mixture a bound is built from (upper alternatives if
    ``main_upper``); ``M_other`` (weight ``w = _GUARD``) rejects rates absurdly far on the other
    side, which a single one-sided factor cannot. M^+ decreases and M^- increases in p, so each
    term is smallest at one end of the interval (monotone envelopes guard against rounding).
    """
    up = log_mixture(s[..., None], n[..., None], grid, 0.0 + m, upper=True)
    down = log_mixture(s[..., None], n[..., None], grid, m, upper=False)
    up = np.minimum.accumulate(np.where(grid >= 1.0, -np.inf, up), axis=-1)  # M^+ at p -> 1-
    down = np.where(grid <= 0.0, -np.inf, down)  # M^- at p -> 0+
    down = np.minimum.accumulate(down[..., ::-1], axis=-1)[..., ::-1]
    up_lo, down_lo = up[..., 1:], down[..., :-1]  # min over [g_i, g_(i+1)]
    main, other = (up_lo, down_lo) if main_upper else (down_lo, up_lo)
    return np.asarray(
        np.logaddexp(np.log1p(-_GUARD) + main, np.log(_GUARD) + other), dtype=np.float64
    )


def difference_upper(
    s_high: npt.ArrayLike,
    n_high: npt.ArrayLike,
    s_low: npt.ArrayLike,
    n_low: npt.ArrayLike,
    level: float,
    design_n: ArmDesign = DEFAULT_DESIGN_N,
    points: int | None = None,
) -> FloatArray:
    """Upper confidence sequence for ``rate_high - rate_low`` of two independent Bernoulli arms.

    For each arm a test martingale for its true rate: ``(1-w) M^- + w M^+`` for the high arm
    (mostly rejecting rates that are too high), ``(1-w) M^+ + w M^-`` for the low arm (mostly
    rejecting rates too low), ``w = 0.02``. Their product is a test martingale for the pair of
    true rates (each request feeds exactly one factor), so by Ville's inequality the pair stays
    in ``{F(p_h) + G(p_l) < log(1/level)}`` at every n with probability >= 1 - level. The bound is
    the supremum of ``p_h - p_l`` over that region, computed conservatively on grids: the region
    lies within the grid cells whose lower bounds of F and G (:func:`_interval_floor`) pass the
    test, and a cell contributes its largest difference, ``x_(i+1) - y_k``. Compared with a union
    bound over per-arm bounds, the widths add in quadrature, not linearly (about half the samples).
    ``design_n``: one design size, or one per arm (high, low); any fixed choice is valid.
    """
    sh, nh = np.asarray(s_high, dtype=np.float64), np.asarray(n_high, dtype=np.float64)
    sl, nl = np.asarray(s_low, dtype=np.float64), np.asarray(n_low, dtype=np.float64)
    sh, nh, sl, nl = np.broadcast_arrays(sh, nh, sl, nl)
    (mh, ml), c = arm_priors(level, design_n), np.log(1.0 / level)
    size = GRID_POINTS if points is None else points
    x, y = _local_grid(sh, nh, size), _local_grid(sl, nl, size)
    f = _interval_floor(sh, nh, x, mh, main_upper=False)  # (..., J) cells [x_i, x_(i+1)]
    g = _interval_floor(sl, nl, y, ml, main_upper=True)  # (..., K) cells [y_k, y_(k+1)]
    feasible = g[..., None, :] < (c - f)[..., :, None]  # (..., J, K)
    y_left = np.where(feasible, y[..., None, :-1], np.inf).min(axis=-1)  # (..., J)
    cand = np.where(np.isfinite(y_left), x[..., 1:] - y_left, -np.inf)
    return np.asarray(np.clip(cand.max(axis=-1), -1.0, 1.0), dtype=np.float64)


def difference_at_least(
    s_high: npt.ArrayLike,
    n_high: npt.ArrayLike,
    s_low: npt.ArrayLike,
    n_low: npt.ArrayLike,
    level: float,
    threshold: float,
    design_n: ArmDesign = DEFAULT_DESIGN_N,
) -> npt.NDArray[np.bool_]:
    """A cheap certificate: True only where ``difference_upper(...) >= threshold`` for sure.

    The bound is the largest ``x_(J+1) - y_K`` over feasible grid cells; exhibiting one feasible
    pair of cells whose difference reaches ``threshold`` proves it. The pair tried is where the
    quadratic approximation of ``F + G`` is smallest on the line ``p_h - p_l = threshold``
    (``p_h`` moves by ``se_h^2`` per unit, ``p_l`` by ``se_l^2``), or the empirical rates when
    their difference already reaches it. Its cells' floors use the mixtures at both cell ends
    without the monotone envelopes, which can only raise them, so a pair found feasible here is
    feasible in :func:`difference_upper`. False means "not shown", not "below": compute the bound.
    Costs 8 mixture evaluations instead of ~700; the replay uses it to skip looks that cannot
    decide.
    """
    sh, nh = np.asarray(s_high, dtype=np.float64), np.asarray(n_high, dtype=np.float64)
    sl, nl = np.asarray(s_low, dtype=np.float64), np.asarray(n_low, dtype=np.float64)
    sh, nh, sl, nl = np.broadcast_arrays(sh, nh, sl, nl)
    (mh, ml), c = arm_priors(level, design_n), np.log(1.0 / level)
    x, y = _local_grid(sh, nh, GRID_POINTS), _local_grid(sl, nl, GRID_POINTS)
    th, tl = np.maximum(nh, 1.0), np.maximum(nl, 1.0)
    ph, pl = sh / th, sl / tl
    vh = np.maximum(ph * (1 - ph), 1.0 / th) / th
    vl = np.maximum(pl * (1 - pl), 1.0 / tl) / tl
    gap = np.maximum(threshold - (ph - pl), 0.0)
    xh = np.clip(ph + gap * vh / (vh + vl), 0.0, 1.0)
    yl = np.clip(pl - gap * vl / (vh + vl), 0.0, 1.0)
    f = _cell_floor(sh, nh, x, xh, mh, main_upper=False)
    g = _cell_floor(sl, nl, y, yl, ml, main_upper=True)
    j = np.clip((x <= xh[..., None]).sum(axis=-1) - 1, 0, x.shape[-1] - 2)
    k = np.clip((y <= yl[..., None]).sum(axis=-1) - 1, 0, y.shape[-1] - 2)
    reach = np.take_along_axis(x, (j + 1)[..., None], -1)[..., 0]
    start = np.take_along_axis(y, k[..., None], -1)[..., 0]
    ok = (g < c - f) & (np.clip(reach - start, -1.0, 1.0) >= threshold)
    return np.asarray(ok & (nh > 0) & (nl > 0), dtype=np.bool_)


def _cell_floor(
    s: FloatArray, n: FloatArray, grid: FloatArray, point: FloatArray, m: float, main_upper: bool
) -> FloatArray:
    """An upper bound on :func:`_interval_floor` for the grid cell that contains ``point``."""
    j = np.clip((grid <= point[..., None]).sum(axis=-1) - 1, 0, grid.shape[-1] - 2)
    ends = np.stack(
        (
            np.take_along_axis(grid, j[..., None], -1)[..., 0],
            np.take_along_axis(grid, (j + 1)[..., None], -1)[..., 0],
        ),
        axis=-1,
    )
    up = log_mixture(s[..., None], n[..., None], ends, m, upper=True)
    down = log_mixture(s[..., None], n[..., None], ends, m, upper=False)
    up = np.where(ends >= 1.0, -np.inf, up)
    down = np.where(ends <= 0.0, -np.inf, down)
    main, other = (up, down) if main_upper else (down, up)
    return np.asarray(
        np.logaddexp(np.log1p(-_GUARD) + main.min(axis=-1), np.log(_GUARD) + other.min(axis=-1)),
        dtype=np.float64,
    )
