"""What the simulation (:mod:`meshlab.stats.simulate`) runs: the judged metrics, the world that
generates the baseline's requests, the candidate's effect, and the efficiency levers the
calibration switches one by one to show what each buys (``analysis/calibration.py``).

Plain frozen dataclasses with no behaviour beyond a derived number, so a study can state a
scenario in one expression and ``meshlab plan`` can build one from a spec.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SimMetric:
    """One judged metric (the simulation's view of :class:`meshlab.spec.analysis.Metric`)."""

    type: str  # "latency" | "error-rate" | "prediction-divergence"
    tolerance: float
    quantile: float = 0.5
    abort_beyond: bool = False  # abortOn: beyond-tolerance

    @property
    def abort_threshold(self) -> float:
        return self.tolerance if self.abort_beyond else 0.0


@dataclass(frozen=True)
class World:
    """The data-generating model of the baseline (the candidate differs by an :class:`Effect`)."""

    latency_median_ms: float = 20.0
    latency_sigma: float = 0.5  # of log latency
    error_rate: float = 0.01
    categories: tuple[float, ...] = (0.7, 0.2, 0.1)
    bursty: bool = False  # shared bursts: latency x2, error rate x5 for both arms
    burst_latency: float = 2.0
    burst_errors: float = 5.0
    burst_enter: float = 0.002  # per request, outside a burst (a Markov chain: :func:`_bursts`)
    burst_leave: float = 0.02  # per request, inside one (bursts last 50 requests on average)
    load_slope: float = 0.0  # median latency x (1 + load_slope * the arm's traffic share)
    cold_start: float = 0.0  # a fresh arm's latency x (1 + cold_start * exp(-age / cold_tau))
    cold_tau: float = 2000.0  # requests of its own an arm needs to warm up by a factor e
    floor: float = 0.0  # share of requests on which any copy of a model disagrees with production
    shared_errors: bool = True  # shadow: a bad request fails on both arms (else independently)

    def burst_share(self) -> float:
        """The long-run share of requests served in a burst (1/11 when bursty)."""
        return self.burst_enter / (self.burst_enter + self.burst_leave) if self.bursty else 0.0


@dataclass(frozen=True)
class Effect:
    """How the candidate differs: latency ratio, added error rate, moved prediction mass."""

    latency_ratio: float = 1.0
    error_delta: float = 0.0
    divergence: float = 0.0  # TV distance (canary) or disagreement rate (shadow)


@dataclass(frozen=True)
class Levers:
    """The efficiency levers, each switchable so the calibration can show what it buys."""

    tuned_design: bool = True  # mixture design size from the tolerance, not a fixed 2,000
    intersect: bool = False  # running intersection of the confidence sequences across looks
    # canary errors' abort side from the errors' arms alone (rates.ratio_lower; measured only)
    conditional_errors: bool = False
    # shadow errors judged on request pairs (bets, or with shadow_bets=False the discordant pairs)
    paired_errors: bool = True
    # the tuned design sizes times this (analysis/sequential_floor.py sweeps it; 1 is adopted)
    design_scale: float = 1.0
    # two-arm canary differences tuned per arm to the planned split (design.arm_designs)
    arm_designs: bool = True
    # canary error rates by betting on requests grouped in arrival order (stats.bets)
    bets: bool = True
    # ... each candidate request with its share of reference requests (stats.arrival); False:
    # one-to-one pairs, and only near an even split (the lever before)
    groups: bool = True
    # canary TV distance by bets on label pairs, per event (at an even planned split)
    tv_bets: bool = True
    # a sequential pass stands (results.py): promote once every metric has passed at some look
    latch: bool = True
    # shadow error rates by betting on the two copies of each request, instead of McNemar
    shadow_bets: bool = True
    # the bets' prior scale (bets.bet_scale) times this (analysis/sequential_floor.py sweeps it)
    bet_scale: float = 1.0
    # error-rate bets aimed at the tolerance, re-sized at snapshots (stats.tolbets); False: the
    # mixture over bet sizes (stats.bets)
    aimed_bets: bool = True
