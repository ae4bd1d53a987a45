"""``meshlab analyze``: the statistical verdict on a recorded samples file, whole or replayed live.

Exit codes: 0 promote, 1 abort, 3 inconclusive, 2 bad input (raised as :class:`ConfigError`).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from meshlab.errors import ConfigError

if TYPE_CHECKING:
    from meshlab.report.evidence import Evidence
    from meshlab.samples import Samples
    from meshlab.spec import Experiment
    from meshlab.stats import Assessment, Comparison, Mode

EXIT_CODES = {"promote": 0, "abort": 1, "inconclusive": 3}
DEFAULT_EVERY = 50  # samples between looks with --replay


def to_json(assessment: Assessment) -> dict[str, Any]:
    """The machine-readable verdict (keys as documented in the README)."""
    from meshlab.stats.serialize import assessment_to_json

    return assessment_to_json(assessment)


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:+.2f}%"


def to_text(assessment: Assessment) -> str:
    """A short human-readable summary."""
    d = assessment.decision
    lines = [
        f"verdict: {assessment.verdict.outcome}"
        + (f" at request {d.at_request} ({d.at_time:.1f} s after the first)" if d else "")
    ]
    for m in assessment.metrics:
        lines.append(
            f"  {m.name:<20} {m.verdict:<12} estimate {_pct(m.estimate):>9}  "
            f"interval [{_pct(m.lower)}, {_pct(m.upper)}]  tolerance {100 * m.tolerance:.3g}%  "
            f"n {m.n_baseline}/{m.n_candidate}  ({m.method})"
        )
    lines += [f"  - {r}" for r in assessment.verdict.reasons]
    return "\n".join(lines)


def seen(experiment: Experiment, data: Samples, comparison: Comparison) -> Evidence:
    """What the file holds, as a run's ``result.json`` evidence: status codes, errors and missing
    predictions per arm, and the rows read but not compared, by arm and kind."""
    import numpy as np

    from meshlab.report.evidence import ARM_NAMES, Evidence, arm_evidence, traffic_warnings

    analysis = experiment.spec.analysis
    arms = arm_evidence(data, analysis.expected_statuses, shadow=comparison.mode == "shadow")
    used = comparison.compared(data)
    reasons = []
    for code, arm in enumerate(ARM_NAMES):
        for mirrored, kind in ((False, "requests"), (True, "mirrored copies")):
            n = int((~used & (data.arm == code) & (data.mirrored == mirrored)).sum())
            if n:
                versus = "control" if comparison.control else "baseline"
                reasons.append(
                    (f"{arm} {kind} (a {comparison.mode} compares candidate vs {versus})", n)
                )
    if comparison.mode == "shadow":  # a production request whose copy never arrived pairs nothing
        copies = data.request_id[data.mirrored & (data.arm != 0)]
        alone = used & ~data.mirrored & (data.arm == 0) & ~np.isin(data.request_id, copies)
        if alone.any():
            reasons.append(
                ("baseline requests with no mirrored copy (no pair to compare)", int(alone.sum()))
            )
            used = used & ~alone
    wants = any(m.type == "prediction-divergence" for m in analysis.metrics)
    extractor = experiment.spec.load.extractor_path
    return Evidence(
        arms=arms,
        expected_statuses=tuple(analysis.expected_statuses),
        extractor=extractor,
        unattributed=0,
        recorded=len(data),
        analysed=int(used.sum()),
        not_analysed=tuple(reasons),
        warnings=traffic_warnings(arms, extractor, wants, 0),
    )


def seen_text(e: Evidence) -> str:
    """The evidence block of the text output."""
    from meshlab.report.text import statuses_text

    lines = [f"seen in the file: {e.recorded} rows, {e.analysed} compared"]
    for a in e.arms:
        lines.append(
            f"  {a.arm:<10} {a.requests:>7} requests  {statuses_text(a.statuses) or '-'}  "
            f"errors {a.errors}  no prediction {a.no_prediction}"
        )
    lines += [f"  not compared: {n} {reason}" for reason, n in e.not_analysed]
    return "\n".join(lines)


def analyze_command(
    samples: Annotated[Path, typer.Argument(help="The samples CSV recorded by a run.")],
    file: Annotated[Path, typer.Option("-f", "--file", help="The experiment spec (YAML).")],
    replay: Annotated[
        bool,
        typer.Option(
            "--replay", help="Look every --every samples in time order; stop at the first decision."
        ),
    ] = False,
    every: Annotated[
        int | None,
        typer.Option("--every", help=f"Samples between looks with --replay ({DEFAULT_EVERY})."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            help="canary (unpaired arms) or shadow (pairs by request_id); "
            "default: shadow when spec.strategy is shadow, else canary.",
        ),
    ] = None,
) -> None:
    """Judge a samples file: promote (exit 0), abort (1) or inconclusive (3)."""
    from meshlab.experiment.sources import analysis_core
    from meshlab.metrics.sourced import PSEUDO_PREFIX, pseudo_mask
    from meshlab.report.evidence import evidence_to_json
    from meshlab.samples import CONTROL, read_samples
    from meshlab.spec import load_experiment
    from meshlab.stats import MODES
    from meshlab.stats.replay import replay as replay_looks

    if every is not None and every < 1:
        raise ConfigError(f"--every: {every} must be at least 1 sample between looks")
    if every is not None and not replay:
        raise ConfigError(f"--every: {every} needs --replay (without it the file is one look)")
    if mode is not None and mode not in MODES:
        raise ConfigError(f"--mode: {mode!r} is not one of {', '.join(MODES)}")
    experiment = load_experiment(file)
    chosen: Mode = "shadow" if (mode or experiment.spec.strategy) == "shadow" else "canary"
    data = read_samples(samples)
    pseudo = pseudo_mask(data)
    if pseudo.any() and not pseudo.all():
        raise ConfigError(
            f"{samples}: the file mixes Prometheus pseudo-samples (request ids {PSEUDO_PREFIX}*) "
            "with raw rows, as a Prometheus + collector run records them, and one comparison "
            f"would count each request twice; keep only the {PSEUDO_PREFIX}* rows or only the "
            "others"
        )
    analysis = experiment.spec.analysis
    # A run recorded with a control arm is judged as it ran: candidate vs control.
    control = experiment.spec.control is not None or bool((data.arm == CONTROL).any())
    if control and experiment.spec.control is None:
        print(
            "meshlab: warning: the samples have control rows, so the candidate is compared "
            "with the control (as the run that recorded them did)",
            file=sys.stderr,
        )

    def make() -> Comparison:  # the live run's comparison: tuned and grouped by the spec's plan
        comparison: Comparison = analysis_core(experiment, analysis, chosen, None, control=control)
        return comparison

    comparison = make()  # judges the whole file, or (replay) only says which rows it compares
    if replay:
        assessment = replay_looks(make, data, every or DEFAULT_EVERY)
    else:
        comparison.update(data)
        assessment = comparison.assess()
    evidence = seen(experiment, data, comparison)
    for warning in (*assessment.warnings, *evidence.warnings):
        print(f"meshlab: warning: {warning}", file=sys.stderr)
    if as_json:
        out = to_json(assessment)
        out["evidence"] = evidence_to_json(evidence)
        typer.echo(json.dumps(out, indent=2))
    else:
        typer.echo(to_text(assessment) + "\n" + seen_text(evidence))
    raise typer.Exit(EXIT_CODES[assessment.verdict.outcome])


def register(app: typer.Typer) -> None:
    """Add ``meshlab analyze`` to the app."""
    app.command("analyze")(analyze_command)
