"""One-look (fixed-horizon) sample sizes: the yardstick of the calibration and of ``meshlab plan``.

A normal approximation of the total requests a single-look test of one metric needs, level
``alpha_share`` on the abort side and power ``1 - beta`` against an effect at the tolerance, at
the world's long-run rates: in a bursty world (:class:`meshlab.stats.simulate.World`) the error
rate and the latency distribution are the mixtures over calm and burst periods, so a one-look
test sized there has the power it claims (bursts are shared by both arms, so they move the two
arms alike and leave the variance of the difference at that of the mixture). The
sequential tests' decision times are reported as multiples of it (``analysis/``), and plans space
their looks by it (:mod:`meshlab.stats.planning`). Re-exported by :mod:`meshlab.stats.simulate`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from scipy import optimize
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
    burst = world.burst_share()
    if metric.type == "latency":
        # var of the log sample quantile per draw: q(1-q) / f(Q)^2, f the density of log latency
        q, sigma = metric.quantile, world.latency_sigma
        gap = math.log(world.burst_latency) / sigma  # bursts, in sigmas above the calm median

        def below(z: float) -> float:  # share of log latencies below the calm median + z sigma
            return float((1 - burst) * sps.norm.cdf(z) + burst * sps.norm.cdf(z - gap))

        zq = float(optimize.brentq(lambda z: below(z) - q, -10.0, 10.0 + gap))
        density = ((1 - burst) * sps.norm.pdf(zq) + burst * sps.norm.pdf(zq - gap)) / sigma
        fq = q * (1 - q) / float(density) ** 2
        return z2 * fq * (1 / wb + 1 / wc) / math.log1p(tol) ** 2
    if metric.type == "error-rate":
        mean_rate = world.error_rate * (1 - burst + burst * world.burst_errors)
        pb, pc = mean_rate, mean_rate + tol
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
