"""How long will it take: requests and wall time to a decision, predicted by simulation.

:func:`plan` runs the calibration's engine (:func:`meshlab.stats.simulate.simulate`, which judges
every look exactly as :class:`meshlab.stats.Comparison` does) on the experiment's own metrics,
alpha, beta and traffic split, in a stated world (:class:`meshlab.stats.simulate.World`:
lognormal latencies, a baseline error rate, prediction labels). Per analysed step and metric it
reports the median and p90 requests (and seconds at the step's request rate) to a promote when
the candidate is no different, and to an abort when that metric is worse by 1x and 2x its
tolerance; per step the experiment's promote time (all metrics judged jointly) and the metric that
binds. The experiment's timeline follows the controller: steps last ``limits.maxDuration`` unless
decided, a promoted step hands over after ``limits.minSamples`` requests, and the whole run stops at
``limits.experimentMaxDuration``. Warnings say when those limits are too short for a likely
decision (the p90 run).

How it stays fast (issue 14; under 10 s for a 4-step, 3-metric canary): per analysed step one
joint no-effect run gives the experiment's promote and, with ``simulate(track=True)``, each
metric's own first pass on the same data (a metric whose own looks would be more than
:data:`SHARED_LOOKS` times finer gets a run of its own); looks every 1/:data:`LOOKS` of the
step's one-look size, ``k`` times as often for an effect of ``k`` tolerances; every run stops as
soon as its p90 is known. Monte Carlo error (:func:`mc_error`): with 40 runs a reported median
lies between the true 35th and 65th percentiles, a p90 between the 80th and 97.5th, 95% of the
time. ``tests/stats/test_plan.py`` predicts every scenario of ``analysis/calibration.py`` this way
and checks it against the study.

Control arm (issue 13): :class:`StepTraffic` carries ``control_share`` (0 without a control).
With a control the simulation compares the candidate with the control, as
``Comparison(control=True)`` does: in a canary step the reference arm has ``min(w, 1 - w)`` of the
traffic instead of production's ``1 - w``, so every metric needs more requests (about twice as many
at a 10% step: ``1/w + 1/w`` against ``1/w + 1/(1 - w)``); in shadow both copies see every
mirrored request and divergence becomes a difference of two disagreement rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from meshlab.spec.analysis import Analysis, Limits, Metric
from meshlab.stats.simulate import (
    Effect,
    Setup,
    SimMetric,
    World,
    one_look_size,
    simulate,
    summarize,
)

LOOKS = 12  # looks per one-look (fixed-horizon) size of the step
HORIZON_FACTOR = 4.0  # of the one-look size, as in the calibration
# A metric's promote estimate comes from the joint run when that run's looks are at most this
# many times coarser than the metric's own schedule would be; else it gets a run of its own.
SHARED_LOOKS = 2


@dataclass(frozen=True)
class StepTraffic:
    """One step as the statistics see it: who gets how much of the request rate."""

    label: str
    candidate_share: float  # share of primary requests the candidate serves (canary), or 1.0
    mode: str  # "canary" or "shadow"
    analysed: bool  # False for a soak with no concurrent baseline (canary 100%, switch)
    pairs_share: float = 1.0  # shadow: share of requests mirrored (pairs per request)
    control_share: float = 0.0  # issue 13: a control arm's share (primary, or mirrored in shadow)
    note: str = ""


@dataclass(frozen=True)
class Estimate:
    """Median and p90 requests and seconds to a decision (inf: more than 10% never decide)."""

    median_requests: float
    p90_requests: float
    median_seconds: float
    p90_seconds: float
    q25_requests: float
    q75_requests: float
    decided: float  # share of simulated runs that reached the expected decision


@dataclass(frozen=True)
class MetricPlan:
    name: str
    type: str
    tolerance: float
    promote: Estimate  # no effect
    abort_1x: Estimate  # this metric worse by its tolerance
    abort_2x: Estimate  # ... by twice its tolerance


@dataclass(frozen=True)
class StepPlan:
    label: str
    mode: str  # a new mode starts a new comparison (shadow, then canary)
    analysed: bool
    rps: float  # requests per second the comparison gets (pairs per second in shadow)
    candidate_rps: float
    metrics: tuple[MetricPlan, ...]
    promote: Estimate | None  # all metrics jointly, no effect
    binds: str  # the metric whose promote takes longest
    note: str = ""
    control_rps: float = 0.0  # requests per second the control arm serves (0: no control)


@dataclass(frozen=True)
class Plan:
    rps: float
    alpha: float
    beta: float
    reps: int
    world: World
    steps: tuple[StepPlan, ...]
    experiment_promote_seconds: tuple[float, float]  # median, p90 (inf when not in time)
    decided_by_step: str  # the step a likely (median) promote lands in, or "none"
    warnings: tuple[str, ...] = field(default_factory=tuple)


def mc_error(reps: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """95% ranges of the true quantiles that a median and a p90 of ``reps`` runs estimate."""
    from scipy import stats as sps

    return tuple(  # type: ignore[return-value]
        (float(sps.binom.ppf(0.025, reps, q)) / reps, float(sps.binom.ppf(0.975, reps, q)) / reps)
        for q in (0.5, 0.9)
    )


NEVER = Estimate(math.inf, math.inf, math.inf, math.inf, math.inf, math.inf, 0.0)


def sim_metric(m: Metric) -> SimMetric:
    return SimMetric(
        m.type, float(m.tolerance), float(m.quantile or 0.5), m.abort_on == "beyond-tolerance"
    )


def _moved(alone: Setup, m: SimMetric, times: float, step: StepTraffic, world: World) -> Setup:
    """``alone`` with ``m`` worse by ``times`` its tolerance, looks spaced for that effect."""
    return step_setup(
        (m,), alone.alpha, alone.beta, step, world, _effect(m, times), times, alone.design_weight,
        alone.steady,
    )  # fmt: skip


def _effect(m: SimMetric, times: float) -> Effect:
    if m.type == "latency":
        return Effect(latency_ratio=1 + times * m.tolerance)
    if m.type == "error-rate":
        return Effect(error_delta=times * m.tolerance)
    return Effect(divergence=times * m.tolerance)


def _quantiles(at: np.ndarray, rate: float, q: dict[str, float], decided: float) -> Estimate:
    med = float(np.quantile(at, 0.5, method="inverted_cdf"))
    p90 = float(np.quantile(at, 0.9, method="inverted_cdf"))
    return Estimate(med, p90, med / rate, p90 / rate, q["q25"], q["q75"], decided)


def estimate(
    setup: Setup, reps: int, rng: np.random.Generator, rate: float, outcome: str
) -> Estimate:
    """Median and p90 requests (and seconds at ``rate``) to ``outcome`` over ``reps`` runs.

    A wrong or missing decision never counts as one (it is infinitely late). The simulation stops
    once the p90 is known (the 90th-percentile run reached ``outcome``): the slow tail up to the
    horizon would change none of the quantiles reported, so ``decided`` is then a lower bound.
    """
    out = simulate(setup, reps, rng, stop=(outcome, math.ceil(0.9 * reps)))
    right = out.promote if outcome == "promote" else out.abort
    at = np.where(right, out.at, np.inf)
    return _quantiles(at, rate, summarize(out), float(right.mean()))


def _joint_promote(
    setup: Setup, reps: int, rng: np.random.Generator, rate: float
) -> tuple[Estimate, list[Estimate]]:
    """The joint promote, and each metric's own first pass in the same runs (shared work).

    A metric's first pass is what a run judging it alone would promote on: same data, same
    bounds (``simulate(track=True)``), at the joint run's look schedule. Runs stop once 90% have
    been promoted jointly, by which time at least as many have passed each metric.
    """
    out = simulate(setup, reps, rng, stop=("promote", math.ceil(0.9 * reps)), track=True)
    joint = _quantiles(
        np.where(out.promote, out.at, np.inf), rate, summarize(out), float(out.promote.mean())
    )
    assert out.passed is not None
    each = []
    for first in out.passed:
        at = np.where(np.isnan(first), np.inf, first)
        q = {"q25": float(np.quantile(at, 0.25, method="inverted_cdf")),
             "q75": float(np.quantile(at, 0.75, method="inverted_cdf"))}  # fmt: skip
        each.append(_quantiles(at, rate, q, float(np.isfinite(at).mean())))
    return joint, each


def step_setup(
    metrics: tuple[SimMetric, ...],
    alpha_share: float,
    beta: float,
    step: StepTraffic,
    world: World,
    effect: Effect | None = None,
    times: float = 0.0,
    design_weight: float | None = None,
    steady: bool = True,
) -> Setup:
    """A simulation of one step's traffic (see :data:`LOOKS` and :data:`HORIZON_FACTOR`).

    ``times``: the effect in multiples of the tolerance. A one-look test of an effect ``k``
    tolerances from the other side needs about ``1 / k^2`` of the requests, so looks beyond
    one tolerance come ``k`` times as often (a 2x effect decides after ~6 looks, not ~3).
    ``design_weight``: the split the arms' bounds are tuned to (the plan's first canary step, as
    the live comparison tunes them; default this step's).
    """
    weight = step.candidate_share
    control = step.control_share > 0  # candidate vs control (see the module docstring)
    one_look = max(
        one_look_size(m, alpha_share, beta, weight, step.mode, world, control) for m in metrics
    )
    # Looks every 1/LOOKS of the one-look size (the calibration looks every ~1/40 of it);
    # runs still undecided at HORIZON_FACTOR x that size count as never deciding.
    every = max(10, round(one_look / (LOOKS * max(1.0, times))))
    horizon = every * math.ceil(HORIZON_FACTOR * one_look / every)
    return Setup(
        metrics,
        alpha_share * len(metrics),
        beta,
        step.mode,
        ((math.inf, weight),),
        every,
        horizon,
        world,
        effect or Effect(),
        control=control,
        design_weight=design_weight,
        steady=steady,
    )


def plan(
    analysis: Analysis,
    limits: Limits,
    steps: list[StepTraffic],
    rps: float,
    rng: np.random.Generator,
    reps: int = 40,
    world: World | None = None,
    design_weight: float | None = None,
    steady: bool = True,
) -> Plan:
    """Predict requests and time to each decision, per analysed step and for the experiment.

    ``design_weight``: the candidate weight the live comparison tunes its arms' bounds to, for
    every step (:func:`meshlab.manifests.first_split`; 0.5 for none: equal designs); None
    tunes each step to its own split.
    """
    world = world or World()
    metrics = tuple(sim_metric(m) for m in analysis.metrics)
    share = analysis.alpha / len(metrics)
    out: list[StepPlan] = []
    for step in steps:
        rate = rps * (step.pairs_share if step.mode == "shadow" else 1.0)
        if not step.analysed:
            out.append(StepPlan(step.label, step.mode, False, rate, rps * step.candidate_share, (), None,
                                "", step.note))  # fmt: skip
            continue
        fixed = {"design_weight": design_weight, "steady": steady}
        joint = step_setup(metrics, share, analysis.beta, step, world, **fixed)  # type: ignore[arg-type]
        promote, passes = _joint_promote(joint, reps, rng, rate)
        per_metric = []
        for m, spec_m, passed in zip(metrics, analysis.metrics, passes, strict=True):
            alone = step_setup((m,), share, analysis.beta, step, world, **fixed)  # type: ignore[arg-type]
            if alone.every * SHARED_LOOKS < joint.every:  # a fast metric: its own, finer looks
                passed = estimate(alone, reps, rng, rate, "promote")
            per_metric.append(
                MetricPlan(
                    spec_m.name,
                    m.type,
                    m.tolerance,
                    passed,
                    NEVER  # no indifference zone: at exactly its tolerance it never aborts
                    if m.abort_beyond
                    else estimate(_moved(alone, m, 1, step, world), reps, rng, rate, "abort"),
                    estimate(_moved(alone, m, 2, step, world), reps, rng, rate, "abort"),
                )
            )
        binds = max(per_metric, key=lambda p: (p.promote.median_requests, p.promote.p90_requests))
        out.append(StepPlan(step.label, step.mode, True, rate, rps * step.candidate_share,
                            tuple(per_metric), promote, binds.name, step.note,
                            rps * step.control_share))  # fmt: skip
    return _timeline(out, limits, rps, analysis, reps, world)


def _timeline(
    steps: list[StepPlan],
    limits: Limits,
    rps: float,
    analysis: Analysis,
    reps: int,
    world: World,
) -> Plan:
    """The experiment's promote time along its steps, and warnings about its limits.

    A step runs until the joint promote (if at least ``minSamples`` requests) or its
    ``maxDuration``, where the run ends undecided (the controller never moves on without a
    promote verdict on the step's own data). After the promote, later steps hand over after
    ``minSamples`` requests each.
    """
    warnings: list[str] = []
    slow: list[str] = []  # per step and metric; reported only when the experiment runs late
    elapsed = {"median": 0.0, "p90": 0.0}
    done: dict[str, float | None] = {"median": None, "p90": None}
    landed = "none"
    stuck = ""  # the step where the median run ends undecided, and what it would need
    phase = steps[0].mode if steps else ""
    for step in steps:
        soak = limits.min_samples / max(step.rps, 1e-9)
        if step.mode != phase:  # the controller starts a fresh comparison for the new phase
            phase = step.mode  # (a phase that ended undecided ended the run: it stays so)
            done = {k: v if v is not None and math.isinf(v) else None for k, v in done.items()}
        for key in ("median", "p90"):
            if done[key] is not None or not step.analysed or step.promote is None:
                # after a promote: minSamples per step; an unanalysed step is entered only then
                elapsed[key] += soak
                continue
            full = step.promote.median_seconds if key == "median" else step.promote.p90_seconds
            need = max(full, soak)
            if need <= limits.max_duration:
                elapsed[key] += need
                done[key] = elapsed[key]
                landed = step.label if key == "median" else landed
            else:  # an undecided step ends the run by onInconclusive: it never moves on
                elapsed[key] += limits.max_duration
                done[key] = math.inf
                if key == "median":
                    stuck = f"step {step.label} " + (
                        f"needs {_dur(need)} for a median promote"
                        if not math.isinf(need)
                        else "rarely promotes in the simulation's horizon"
                    )
        for mp in step.metrics:
            if mp.promote.p90_seconds > limits.max_duration and step.analysed:
                slow.append(
                    f"step {step.label}: metric {mp.name} needs {_dur(mp.promote.p90_seconds)} "
                    f"(p90) to show it is within its {100 * mp.tolerance:g}% tolerance, longer "
                    f"than limits.maxDuration {_dur(limits.max_duration)}"
                )
    median = done["median"] if done["median"] is not None else math.inf
    p90 = done["p90"] if done["p90"] is not None else math.inf
    if math.isinf(p90) or p90 > limits.experiment_max_duration:
        warnings += slow
    if math.isinf(median):
        warnings.append(
            f"the experiment is likely to end undecided: {stuck or 'no step decides'}, longer "
            f"than limits.maxDuration ({_dur(limits.max_duration)}), and a step that ends "
            "undecided ends the run; raise limits.maxDuration, the canary weights or the load's "
            "rps, or widen a tolerance"
        )
    elif math.isinf(p90):
        warnings.append(
            "more than 10% of good candidates would end undecided: raise limits.maxDuration to "
            "the p90 promote time of the first analysed step"
        )
    if not math.isinf(p90) and p90 > limits.experiment_max_duration:
        warnings.append(
            f"limits.experimentMaxDuration {_dur(limits.experiment_max_duration)} is shorter than "
            f"the p90 time to a promote ({_dur(p90)}); raise it to at least {_dur(p90 * 1.1)}"
        )
    elif not math.isinf(median) and median > limits.experiment_max_duration:
        warnings.append(
            f"limits.experimentMaxDuration {_dur(limits.experiment_max_duration)} is shorter than "
            f"the median time to a promote ({_dur(median)})"
        )
    return Plan(rps, analysis.alpha, analysis.beta, reps, world, tuple(steps), (median, p90),
                landed, tuple(warnings))  # fmt: skip


def _dur(seconds: float) -> str:
    if math.isinf(seconds):
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"
