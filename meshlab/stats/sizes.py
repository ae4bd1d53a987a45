"""One-look (fixed-horizon) sample sizes: the yardstick of the calibration and of ``meshlab plan``.

A normal approximation of the total requests a single-look test of one metric needs, level
``alpha_share`` on the abort side and power ``1 - beta`` against an effect at the tolerance. The
sequential tests' decision times are reported as multiples of it (``analysis/``), and plans space
their looks by it (:mod:`meshlab.stats.planning`). Re-exported by :mod:`meshlab.stats.simulate`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from scipy import stats as sps

if TYPE_CHECKING:
    from meshlab.stats.simulate import SimMetric, World


def one_look_size(
    metric: SimMetric,
    alpha_share: float,
    beta: float,
    weight: float,
    mode: str,
    world: World,
    control: bool = False,
) -> float:
    """Total requests a one-look (fixed-horizon) test of this metric needs (normal approximation).

    Power ``1 - beta`` against an effect at the tolerance, level ``alpha_share``. With a control
    the reference arm gets ``weight`` of the traffic (not ``1 - weight``), and shadow divergence
    is a difference of two disagreement rates.
    """
    z2 = (float(sps.norm.ppf(1 - alpha_share)) + float(sps.norm.ppf(1 - beta))) ** 2
    if mode == "shadow":
        wb, wc = 1.0, 1.0
    else:
        wb, wc = (min(weight, 1 - weight) if control else 1 - weight), weight
    tol = metric.tolerance
    if metric.type == "latency":
        zq = float(sps.norm.ppf(metric.quantile))
        # var of the log sample quantile per draw: q(1-q) / (f(Q) Q)^2, lognormal
        density = float(sps.norm.pdf(zq))
        fq = metric.quantile * (1 - metric.quantile) * (world.latency_sigma / density) ** 2
        return z2 * fq * (1 / wb + 1 / wc) / math.log1p(tol) ** 2
    if metric.type == "error-rate":
        pb, pc = world.error_rate, world.error_rate + tol
        return z2 * (pb * (1 - pb) / wb + pc * (1 - pc) / wc) / tol**2
    if mode == "shadow" and control:  # two rates, floor f vs f + tol (union bound: half levels)
        f = world.floor
        z2h = (float(sps.norm.ppf(1 - alpha_share / 2)) + float(sps.norm.ppf(1 - beta / 2))) ** 2
        return z2h * (f * (1 - f) + (f + tol) * (1 - f - tol)) / tol**2
    if mode == "shadow":  # one-sample test of a disagreement rate: 0 against the tolerance
        return z2 * tol * (1 - tol) / tol**2
    p0 = world.categories[0]
    p1 = p0 - tol
    return z2 * (p0 * (1 - p0) / wb + p1 * (1 - p1) / wc) / tol**2
