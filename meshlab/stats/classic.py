"""Fixed-horizon latency comparison: Mann-Whitney U with a Hodges-Lehmann interval (as Kayenta judges).

Latencies are compared on the log scale, so the Hodges-Lehmann shift ``d`` (median of all pairwise
differences log c_i - log b_j) reads as a relative change ``exp(d) - 1`` of every quantile under a
scale-shift model. The one-sided bounds are the pairwise differences at the ranks given by the
normal approximation of the U distribution (Hollander & Wolfe, *Nonparametric Statistical Methods*,
section 4.3; Bauer 1972). They are found without forming the n1*n2 differences: the number of
pairs with difference <= d is counted in O(n log n) and d is bisected.

Guarantee: evaluated ONCE on a fixed sample, P(lower > true shift) <= alpha_share and
P(upper < true shift) <= beta. Evaluated repeatedly on a growing sample (a live run looking after
every batch), the false-abort rate grows far above alpha_share; :class:`meshlab.stats.Comparison`
warns when that happens and ``analysis/calibration.py`` measures the inflation.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

FloatArray = npt.NDArray[np.float64]

GUARANTEE = (
    "one look only: P(lower above the true relative shift) <= {a:.4g}, P(upper below it) <= {b:.4g} "
    "(Mann-Whitney U / Hodges-Lehmann on log latency); repeated looks inflate both"
)


def _pairs_at_most(x_sorted: FloatArray, y_sorted: FloatArray, d: float) -> int:
    """Number of pairs (i, j) with x_i - y_j <= d."""
    return int(np.searchsorted(x_sorted, y_sorted + d, side="right").sum())


def _kth_difference(x_sorted: FloatArray, y_sorted: FloatArray, k: int) -> float:
    """The k-th smallest (1-based) of all pairwise differences x_i - y_j, by bisection on d."""
    lo = float(x_sorted[0] - y_sorted[-1]) - 1e-9
    hi = float(x_sorted[-1] - y_sorted[0]) + 1e-9
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _pairs_at_most(x_sorted, y_sorted, mid) >= k:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-8:  # 1e-6 % in relative terms
            break
    return hi


def hodges_lehmann(
    baseline_ms: npt.ArrayLike, candidate_ms: npt.ArrayLike, alpha_share: float, beta: float
) -> tuple[float, float, float, float]:
    """(lower, estimate, upper, one-sided Mann-Whitney p-value) of the relative latency change."""
    floor = 1e-6  # log needs positive latencies; 0 ms only occurs for instant transport failures
    b = np.sort(np.log(np.maximum(np.asarray(baseline_ms, dtype=np.float64), floor)))
    c = np.sort(np.log(np.maximum(np.asarray(candidate_ms, dtype=np.float64), floor)))
    n1, n2 = c.shape[0], b.shape[0]
    if n1 == 0 or n2 == 0:
        return -1.0, math.nan, math.inf, math.nan
    total = n1 * n2
    sd = math.sqrt(total * (n1 + n2 + 1) / 12.0)

    def rank(level: float) -> int:
        position: float = total / 2.0 - float(sps.norm.ppf(1.0 - level)) * sd
        return math.floor(position)

    k_lo, k_hi = rank(alpha_share), total + 1 - rank(beta)
    lower = _kth_difference(c, b, k_lo) if k_lo >= 1 else -math.inf
    upper = _kth_difference(c, b, k_hi) if k_hi <= total else math.inf
    est = 0.5 * (_kth_difference(c, b, (total + 1) // 2) + _kth_difference(c, b, total // 2 + 1))
    p_value = float(sps.mannwhitneyu(c, b, alternative="greater", method="asymptotic").pvalue)
    return math.expm1(lower), math.expm1(est), math.expm1(upper), p_value
