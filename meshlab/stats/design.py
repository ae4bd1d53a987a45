"""Design sizes of the mixture boundaries, tuned to each metric's tolerance.

A beta-binomial mixture confidence sequence is valid for every choice of its prior size; the
choice only decides *where* it is tightest (Howard, Ramdas, McAuliffe & Sekhon, "Time-uniform,
nonparametric, nonasymptotic confidence sequences", Annals of Statistics 49 (2021), section 3.5
and eq. 3.22: the prior size ``m`` that minimises the boundary at a chosen sample size
``n_opt``). A fixed ``n_opt`` of 2,000 requests suits one tolerance; a 10% latency tolerance and a
0.5% error-rate tolerance decide at sample sizes two orders of magnitude apart. Here ``n_opt`` is
set from the metric's tolerance before any data is seen (so the guarantee is untouched): the
per-arm sample size at which a one-sided bound's half-width reaches the tolerance, expressed on
the Bernoulli scale the boundary works on, times :data:`DESIGN_FACTOR` (``analysis/
sequential_floor.py`` sweeps it from 1/4x to 4x on the error-rate scenarios, with
``Levers(design_scale=...)``).

A two-arm canary difference (error rate, TV events) pays each arm's mixture cost; at an unequal
split (a 5% canary without a control) one size for both arms is tuned to neither, the
candidate's ~20x smaller sample included. :func:`arm_designs` gives each arm its own size from
the split the plan sets before any data (``Comparison(candidate_share=...)``, the first weighted
canary step): at a 5% step it cut the A/A promote from 0.91 / 1.26 to 0.59 / 0.91 of the
one-look size (median / p90, ``analysis/calibration.py``'s lever table); equal shares (50%, or a
step with a control) are unchanged.

Reference scales (stated assumptions; only efficiency depends on them, never validity):

* latency at quantile q: a relative change ``t`` moves the Bernoulli rate ``P(X <= Q(q))`` by
  about ``phi(z_q) log(1 + t) / sigma`` for lognormal latencies with ``sigma = 0.5``;
* error rate: Bernoulli standard deviation at a base rate equal to the tolerance (floor 1%);
* prediction divergence: the worst-case standard deviation 0.5.
"""

from __future__ import annotations

import math

from scipy import stats as sps

DESIGN_FACTOR = 60.0
REFERENCE_SIGMA = 0.5
_MIN, _MAX = 50.0, 1e8


def effect_scale(metric_type: str, tolerance: float, quantile: float = 0.5) -> float:
    """The tolerance in Bernoulli standard deviations per request (see the module docstring)."""
    if metric_type == "latency":
        q = quantile
        shift = float(sps.norm.pdf(sps.norm.ppf(q))) * math.log1p(tolerance) / REFERENCE_SIGMA
        return shift / math.sqrt(q * (1 - q))
    if metric_type == "error-rate":
        p = min(max(tolerance, 0.01), 0.5)
        return tolerance / math.sqrt(p * (1 - p))
    return tolerance / 0.5


def design_size(metric_type: str, tolerance: float, quantile: float = 0.5) -> float:
    """``n_opt`` of the mixture boundary for a metric: ``DESIGN_FACTOR / effect_scale**2``."""
    scale = effect_scale(metric_type, tolerance, quantile)
    return float(min(max(DESIGN_FACTOR / scale**2, _MIN), _MAX))


def arm_designs(design: float, candidate_share: float) -> tuple[float, float]:
    """(reference arm, candidate arm) design sizes of a two-arm difference at an unequal split.

    ``design`` is tuned for an equal split (each arm near ``n0`` at the decision). With shares
    ``w_c`` and ``w_r = 1 - w_c`` of the compared requests the difference reaches the same width
    when ``1/n_c + 1/n_r = 2/n0``, i.e. at ``n_c = n0 (1 + w_c/w_r) / 2`` and
    ``n_r = n0 (1 + w_r/w_c) / 2``; each arm's mixture is tuned to its own size. Equal shares
    give ``(design, design)``.
    """
    w_c = min(max(candidate_share, 1e-4), 1 - 1e-4)
    w_r = 1 - w_c
    return _clip(design * (1 + w_r / w_c) / 2), _clip(design * (1 + w_c / w_r) / 2)


def compared_share(weight: float, control: bool) -> float:
    """The candidate's share of the compared requests at candidate weight ``weight`` (0-1).

    Without a control the reference is production (``1 - weight``); with one it is the control,
    which the routing plan gives ``min(weight, 1 - weight)``.
    """
    w = min(max(weight, 0.0), 1.0)
    reference = min(w, 1 - w) if control else 1 - w
    return w / (w + reference) if w + reference > 0 else 0.5


def _clip(n: float) -> float:
    return float(min(max(n, _MIN), _MAX))
