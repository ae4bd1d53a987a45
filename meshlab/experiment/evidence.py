"""The evidence behind a verdict, gathered from a finished run (see :mod:`meshlab.report.result`).

Built from the controller's rows, its step records and the load generator's unattributed rows:
status codes and missing predictions per arm, and why the requests recorded and the requests
analysed differ.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from meshlab.experiment.controller import Controller, Outcome, has_concurrent_baseline, phase_of
from meshlab.load import LoadRun
from meshlab.manifests import plan
from meshlab.report.result import (
    PREFLIGHT,
    DecidedAfter,
    Evidence,
    ProbeAnswer,
    arm_evidence,
    preflight_from_json,
    traffic_warnings,
)
from meshlab.samples import Samples
from meshlab.spec import Experiment


def _unattributed(controller: Controller) -> int:
    """Requests the load generator recorded with no arm (they never reach ``controller.rows``)."""
    source: Any = controller.source
    for _ in range(3):  # LocalMeshSamples / PrometheusLiveSamples -> LoadSamples -> LoadRun
        if isinstance(source, LoadRun):
            return len(source.unattributed)
        source = getattr(source, "load", None) or getattr(source, "run", None)
    return 0


def _late(controller: Controller) -> tuple[tuple[str, int], ...]:
    """Rows per source that the run's one merge fed on arrival, behind the ordered stream."""
    by_source = getattr(controller.source, "late_by_source", None)
    return tuple(sorted(by_source.items())) if isinstance(by_source, dict) else ()


def evidence_for(
    exp: Experiment, controller: Controller, outcome: Outcome, decided: DecidedAfter | None
) -> Evidence:
    """Status codes per arm, missing predictions, unattributed and unanalysed requests."""
    rows = sorted(controller.rows, key=lambda s: s.timestamp)
    samples = Samples.from_rows(rows)
    steps = {s.name: s for s in plan(exp)}
    # the phase the run ended in judges which copies count; rows alone would be fooled by the
    # candidate's own answers after a promote routed users to it
    last = steps.get(str(outcome.steps[-1]["step"])) if outcome.steps else None
    shadow_only = (
        phase_of(last) == "shadow"
        if last is not None
        else bool(rows) and not any(r.arm == "candidate" and not r.mirrored for r in rows)
    )
    expected = exp.spec.analysis.expected_statuses
    arms = arm_evidence(samples, expected, shadow=shadow_only)
    wants = any(m.type == "prediction-divergence" for m in exp.spec.analysis.metrics)
    unattributed = _unattributed(controller)
    recorded = len(controller.rows)
    snap = outcome.snapshot
    # A canary with a control compares the candidate with the control: production is not analysed.
    production = snap.n_baseline if snap else 0
    skip_production = exp.spec.control is not None and exp.spec.strategy == "canary"
    analysed = (
        (snap.n_candidate + snap.n_control + (0 if skip_production else production)) if snap else 0
    )
    phases = [phase_of(s) for s in steps.values()]
    soak = shadow_phase = 0
    for record in outcome.steps:
        step = steps.get(str(record["step"]))
        n = sum(int(v) for v in record.get("requests", {}).values())
        if step is not None and not has_concurrent_baseline(step):
            soak += n
        elif step is not None and phase_of(step) != phases[-1] and snap is not None:
            shadow_phase += n
    after = max(0, recorded - decided.requests - soak) if decided else 0
    reasons = [
        (
            "served by production in a canary with a control (the candidate is compared with the "
            "control, which gets the same share)",
            production if skip_production else 0,
        ),
        ("in steps with no baseline beside the candidate (soak: recorded, not compared)", soak),
        ("in the shadow phase, analysed on its own (its verdict opened the canary)", shadow_phase),
        ("after the decision (in flight during the rollback or the load's drain)", after),
    ]
    rest = recorded - analysed - sum(n for _, n in reasons)
    if rest > 0:
        reasons.append(("outside the analysed looks (before step 1 or after the last look)", rest))
    preflight: tuple[ProbeAnswer, ...] = ()
    with contextlib.suppress(OSError, ValueError):
        preflight = preflight_from_json(
            json.loads((controller.journal.run_dir / PREFLIGHT).read_text(encoding="utf-8"))
        )
    return Evidence(
        arms=arms,
        expected_statuses=tuple(expected),
        extractor=exp.spec.load.extractor_path,
        unattributed=unattributed,
        recorded=recorded,
        analysed=analysed,
        not_analysed=tuple((r, n) for r, n in reasons if n > 0),
        warnings=traffic_warnings(arms, exp.spec.load.extractor_path, wants, unattributed),
        preflight=preflight,
        late=_late(controller),
    )
