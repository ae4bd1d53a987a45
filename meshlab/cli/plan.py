"""``meshlab plan``: how long an experiment will take to decide, before running it.

Reads the experiment spec, turns each step into the traffic the statistics see (the candidate's
share of ``--rps`` or ``load.rps``; the mirrored share in shadow; header share for previews and
A/B tests), and prints :func:`meshlab.stats.planning.plan`'s predictions: per step and metric the
median and p90 requests and wall time to a promote (no effect) and to an abort (1x and 2x the
tolerance), the experiment's promote time, the metric that binds, and warnings when
``limits.maxDuration`` or ``limits.experimentMaxDuration`` is too short. Exit 0, or 2 on bad input.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from meshlab.errors import ConfigError
from meshlab.manifests import Step
from meshlab.manifests import plan as plan_steps
from meshlab.spec import Experiment, load_experiment


def mean_rps(experiment: Experiment) -> float:
    """The load's average request rate (steps and ramps averaged over their duration)."""
    load = experiment.spec.load
    if load.steps:
        total = sum(s.duration for s in load.steps)
        return sum(s.rps * s.duration for s in load.steps) / total
    if load.ramp is not None:
        return (load.ramp.from_rps + load.ramp.to_rps) / 2
    return float(load.rps)


def traffic(experiment: Experiment, step: Step, control: bool | None = None) -> Any:
    """The statistics' view of a routing step (a :class:`StepTraffic`).

    ``control``: plan with a control arm (True), without (False), or as the spec says (None).
    With one, a canary step at ``w`` gives the control ``min(w, 1 - w)`` (the routing plan's
    split) and a shadow step mirrors to it at the candidate's percentage.
    """
    from meshlab.experiment.controller import has_concurrent_baseline
    from meshlab.stats.planning import StepTraffic

    spec = experiment.spec
    with_control = spec.control is not None if control is None else control
    analysed = has_concurrent_baseline(step)
    if step.kind == "shadow":
        share = step.mirror_percent / 100
        return StepTraffic(
            step.label,
            share,
            "shadow",
            True,
            pairs_share=share,
            control_share=share if with_control else 0.0,
        )
    if step.matches:  # preview / A/B test: the candidate serves the requests that match
        variants = spec.load.variants
        share = sum(v.share for v in variants) if variants else 0.5
        note = f"candidate share = requests carrying the match headers ({share:.0%})"
        return StepTraffic(step.label, share, "canary", True, note=note)
    note = "" if analysed else "no baseline beside it: a soak of limits.minSamples requests"
    w = step.candidate_weight / 100
    control_share = min(w, 1 - w) if with_control and analysed else 0.0
    return StepTraffic(step.label, w, "canary", analysed, note=note, control_share=control_share)


def _n(x: float) -> str:
    return "never" if math.isinf(x) else f"{x:,.0f}"


def _t(x: float) -> str:
    from meshlab.stats.planning import _dur

    return _dur(x)


def _cell(e: Any) -> str:
    if math.isinf(e.median_requests):
        return "undecided (median)"
    if math.isinf(e.p90_requests):
        return f"{_n(e.median_requests)} req {_t(e.median_seconds)} / p90 undecided"
    return (
        f"{_n(e.median_requests)} req {_t(e.median_seconds)} / p90 {_n(e.p90_requests)} "
        f"{_t(e.p90_seconds)}"
    )


def to_text(name: str, result: Any, limits: Any) -> str:
    from meshlab.stats.planning import mc_error

    (m_lo, m_hi), (p_lo, p_hi) = mc_error(result.reps)
    lines = [
        f"meshlab plan: {name} at {result.rps:g} rps, alpha {result.alpha:g}, beta "
        f"{result.beta:g}; {result.reps} simulated runs per estimate (median / p90; Monte Carlo "
        f"error: the true p{100 * m_lo:.0f}-p{100 * m_hi:.0f} / p{100 * p_lo:.0f}-"
        f"p{100 * p_hi:.0f}, 95%)",
        f"assumed: lognormal latency (sigma {result.world.latency_sigma:g}), baseline error rate "
        f"{result.world.error_rate:.2%}, {len(result.world.categories)} prediction labels; limits: "
        f"maxDuration {_t(limits.max_duration)} per step, experimentMaxDuration "
        f"{_t(limits.experiment_max_duration)}, minSamples {limits.min_samples}",
    ]
    for step in result.steps:
        head = f"step {step.label}: {step.rps:g} requests/s"
        if not step.analysed:
            lines.append(f"{head} (not analysed: {step.note})")
            continue
        versus = f" vs control {step.control_rps:g} rps" if step.control_rps else ""
        lines.append(f"{head}; compared: candidate {step.candidate_rps:g} rps{versus}" + (
            f" ({step.note})" if step.note else ""))  # fmt: skip
        lines.append(f"  {'metric':<16} {'promote (no effect)':<34} {'abort at 1x tolerance':<34} "
                     "abort at 2x tolerance")  # fmt: skip
        for m in step.metrics:
            lines.append(
                f"  {m.name:<16} {_cell(m.promote):<34} {_cell(m.abort_1x):<34} {_cell(m.abort_2x)}"
            )
        lines.append(f"  {'all metrics':<16} {_cell(step.promote)}   binds: {step.binds}")
    med, p90 = result.experiment_promote_seconds
    if math.isinf(med):
        lines.append("experiment: a good candidate is likely to end undecided (see the warning)")
    else:
        lines.append(
            f"experiment: a good candidate is promoted after {_t(med)} (median), "
            + (f"{_t(p90)} (p90)" if not math.isinf(p90) else "undecided at the p90")
            + f"; the median decision lands in step {result.decided_by_step}"
        )
    lines += [f"warning: {w}" for w in result.warnings]
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def plan_command(
    file: Annotated[Path, typer.Option("-f", "--file", help="The experiment spec (YAML).")],
    rps: Annotated[
        float | None, typer.Option("--rps", help="Request rate (default: the spec's load).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    reps: Annotated[int, typer.Option("--reps", help="Simulated runs per estimate.")] = 40,
    error_rate: Annotated[
        float, typer.Option("--error-rate", help="Assumed baseline error rate.")
    ] = 0.01,
    latency_sigma: Annotated[
        float, typer.Option("--latency-sigma", help="Assumed spread of log latency.")
    ] = 0.5,
    seed: Annotated[int, typer.Option("--seed", help="Random seed of the simulation.")] = 14,
    control: Annotated[
        str,
        typer.Option(
            "--control",
            help="Plan with a control arm: spec (as the spec says), with, without, or both "
            "(prints both plans and what the control costs in requests).",
        ),
    ] = "spec",
) -> None:
    """Predict how long the experiment takes to promote a good candidate or abort a bad one."""
    if rps is not None and not (rps > 0 and math.isfinite(rps)):
        raise ConfigError(f"--rps: {rps:g} must be a finite rate above 0 requests per second")
    if reps < 20:
        raise ConfigError(f"--reps: {reps} is too few for a p90; use at least 20")
    if not 0 <= error_rate < 0.5:
        raise ConfigError(f"--error-rate: {error_rate:g} must be a rate in [0, 0.5)")
    if not latency_sigma > 0:
        raise ConfigError(f"--latency-sigma: {latency_sigma:g} must be above 0")
    if control not in CONTROL_CHOICES:
        raise ConfigError(f"--control: {control!r} is not one of {', '.join(CONTROL_CHOICES)}")
    experiment = load_experiment(file)
    spec = experiment.spec
    if spec.analysis.method != "sequential":
        raise ConfigError(
            "spec.analysis.method: plan predicts sequential analyses; fixed-horizon decides once "
            "at the end of the load (set method: sequential to plan it)"
        )
    import numpy as np

    from meshlab.manifests import first_split, steady_split
    from meshlab.stats.planning import plan
    from meshlab.stats.simulate import World

    phases = 2 if spec.strategy == "shadow" and spec.then == "canary" else 1
    analysis = spec.analysis.model_copy(
        update={"alpha": spec.analysis.alpha / phases, "beta": spec.analysis.beta / phases}
    )
    if control == "both" and spec.strategy not in ("canary", "shadow"):
        raise ConfigError(
            f"--control: both needs strategy canary or shadow (a control arm), not {spec.strategy}"
        )
    choices: dict[str, list[bool | None]] = {
        "spec": [None],
        "with": [True],
        "without": [False],
        "both": [False, True],
    }
    variants = choices[control]
    split = first_split(experiment)
    results = []
    for variant in variants:
        steps = [traffic(experiment, s, variant) for s in plan_steps(experiment)]
        results.append(
            plan(
                analysis,
                spec.limits,
                steps,
                rps if rps is not None else mean_rps(experiment),
                np.random.default_rng(seed),
                reps,
                World(latency_sigma=latency_sigma, error_rate=error_rate),
                design_weight=split if split is not None else 0.5,  # as the live run tunes
                steady=steady_split(experiment),
            )
        )
    name = f"{spec.strategy} {experiment.metadata.namespace}/{experiment.metadata.name}"
    if as_json:
        body = [_jsonable(asdict(r)) for r in results]
        typer.echo(json.dumps(body[0] if len(body) == 1 else {
            "without_control": body[0], "with_control": body[1]}, indent=2))  # fmt: skip
    elif len(results) == 1:
        typer.echo(to_text(name, results[0], spec.limits))
    else:
        typer.echo(to_text(f"{name}, without a control", results[0], spec.limits))
        typer.echo(to_text(f"{name}, with a control", results[1], spec.limits))
        typer.echo(control_cost(results[0], results[1]))


CONTROL_CHOICES = ("spec", "with", "without", "both")


def control_cost(without: Any, with_: Any) -> str:
    """One line per analysed step: median requests to promote without and with a control."""
    lines = ["what the control costs (median requests to promote a good candidate):"]
    for a, b in zip(without.steps, with_.steps, strict=True):
        if not a.analysed or a.promote is None or b.promote is None:
            continue
        x, y = a.promote.median_requests, b.promote.median_requests
        ratio = "" if math.isinf(x) or math.isinf(y) else f" (x{y / x:.2f})"
        lines.append(f"  step {a.label}: {_n(x)} without, {_n(y)} with{ratio}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    """Add ``meshlab plan`` to the app."""
    app.command("plan")(plan_command)
