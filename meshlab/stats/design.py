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
