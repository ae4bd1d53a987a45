"""Running one experiment end to end: build the edges from the spec, run the controller, finalize.

``start_experiment`` is what ``meshlab <strategy> start`` calls. It creates the run directory,
starts the mesh (local Envoy by default) with all traffic on the baseline, starts Locust, wires
the live sources and the per-phase statistics (candidate vs control with ``spec.control``, whose
second baseline the mesh starts and routes) into a :class:`Controller`, and whatever happens
(decision, error, Ctrl-C, SIGTERM) finishes by writing samples, result and report, then stopping
every process it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from meshlab.errors import ConfigError, MeshlabError
from meshlab.experiment import signals
from meshlab.experiment.controller import Controller, Outcome
from meshlab.experiment.evidence import evidence_for
from meshlab.experiment.notify import Notifier
from meshlab.experiment.ports import Analyzer, LiveSamples, Progress, flush_rows
from meshlab.experiment.preflight import check_before_routing
from meshlab.experiment.progress import JsonProgress, QuietProgress, RichProgress
from meshlab.experiment.recovery import recover_before_start
from meshlab.experiment.sources import (
    LoadSamples,
    StatsAnalyzer,
    analysis_core,
    check_collector,
    uses_collector,
)
from meshlab.experiment.state import (
    ExperimentState,
    cluster_record,
    load_state,
    save_state,
    state_path,
)
from meshlab.load import LoadRun, plan_from_spec
from meshlab.mesh import MeshBackend
from meshlab.report import build_report, load_run
from meshlab.report.collector import read_collector
from meshlab.report.record import RESULT, SAMPLES, SPEC, dump_json, write_atomic
from meshlab.report.result import DecidedAfter, metric_from_json, step_from_json
from meshlab.report.result import RunResult as ResultRecord
from meshlab.samples import Sample, samples_to_csv
from meshlab.spec import Experiment, Load, load_experiment
from meshlab.spec.load import Variant
from meshlab.stats.serialize import assessment_to_json

ProgressMode = Literal["rich", "quiet", "json"]


@dataclass(frozen=True)
class RunResult:
    """What ``start`` leaves behind: the outcome, the run directory and the report paths."""

    outcome: Outcome
    run_dir: Path
    result: dict[str, Any]
    reports: tuple[Path, Path] | None


def new_run_dir(base: Path, experiment: Experiment) -> Path:
    """``runs/<name>-<UTC time>/``, unique even for two runs in the same second."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for i in range(100):
        path = base / f"{experiment.metadata.name}-{stamp}{'' if i == 0 else f'-{i}'}"
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise ConfigError(f"{base}: cannot create a new run directory")


def make_progress(mode: ProgressMode) -> Progress:
    if mode == "json":
        return JsonProgress()
    if mode == "quiet" or not sys.stderr.isatty():
        return QuietProgress()
    return RichProgress()


def analyzer_factory(
    experiment: Experiment, bounds: Callable[[], Sequence[float]] | None = None
) -> Callable[[str, float, float], Analyzer]:
    """Per-phase statistics: the spec's analysis with the phase's share of alpha and beta.

    With ``bounds`` (histogram bucket bounds, for Prometheus-fed pseudo-samples) latencies are only
    known to within a bucket, so the bracketed comparison is used: it decides only when the
    verdict is the same wherever in its bucket each request really fell. With ``spec.control``
    every metric compares the candidate with the control (same share, same age).
    """
    control = experiment.spec.control is not None

    def make(mode: str, alpha: float, beta: float) -> Analyzer:
        analysis = experiment.spec.analysis.model_copy(update={"alpha": alpha, "beta": beta})
        core = analysis_core(experiment, analysis, mode, bounds, control=control)
        return StatsAnalyzer(core, assessment_to_json)

    return make


def _live_source(
    experiment: Experiment,
    load: LoadSamples,
    mirrored: Callable[[], list[Sample]],
    closers: list[Callable[[], None]],
    run_dir: Path,
) -> tuple[LiveSamples, Callable[[], Sequence[float]] | None]:
    """Where the statistics read from: the source ``spec.metrics.source`` names in the registry
    (the collector whenever the shadow's predictions can only reach meshlab through it)."""
    from meshlab.registry import metrics_source

    name = "collector" if uses_collector(experiment) else experiment.spec.metrics.source
    live, bounds = metrics_source(name)(experiment, load, mirrored, closers, run_dir)
    return live, bounds


def load_for(experiment: Experiment) -> Load:
    """The load section, with the traffic mix a preview or A/B test needs to reach the candidate.

    Blue/green previews and A/B tests send only requests with given headers to the candidate. Real
    users carry them; generated load must too, so unless ``load.variants`` says otherwise half the
    requests carry the preview header (bluegreen) or the first A/B match's headers (abtest).
    """
    spec = experiment.spec
    load = spec.load
    if load.variants is not None or spec.strategy not in ("bluegreen", "abtest"):
        return load
    if spec.strategy == "bluegreen":
        header = spec.bluegreen_block.preview_header
        headers = {header.name: header.value}
    else:
        assert spec.abtest is not None
        match = spec.abtest.match[0]
        literal = {
            name: m.exact if m.exact is not None else m.prefix
            for name, m in (match.headers or {}).items()
        }
        if not literal or any(v is None for v in literal.values()) or match.uri is not None:
            raise ConfigError(
                "spec.load.variants: cannot derive requests that match spec.abtest.match[0] (it "
                "uses a regex or a uri); give them, e.g. variants: [{share: 0.5, headers: "
                "{x-user-group: beta}}]"
            )
        headers = {k: str(v) for k, v in literal.items()}
    return load.model_copy(update={"variants": [Variant(share=0.5, headers=headers)]})


def check_not_running(experiment: Experiment, spec_file: Path) -> None:
    """Refuse to start twice: a live experiment owns its routes."""
    state = load_state(state_path(experiment, spec_file))
    if state is not None and state.phase in ("starting", "running") and state.process_alive:
        raise ConfigError(
            f"{experiment.metadata.namespace}/{experiment.metadata.name} is already running "
            f"(pid {state.pid}); see 'meshlab status' or stop it first"
        )


def _mesh_for(
    experiment: Experiment,
    spec_dir: Path,
    run_dir: Path,
    *,
    kubeconfig: str | None,
    context: str | None,
    dry_run: bool,
) -> tuple[MeshBackend, Callable[[], list[Sample]], str | None]:
    """The backend ``spec.target.kind`` names in the registry, its mirrored copies and client URL."""
    from meshlab.mesh.base import RunContext
    from meshlab.registry import mesh_backend

    where = RunContext(spec_dir, run_dir / "mesh", kubeconfig, context, dry_run)
    run = mesh_backend(experiment.spec.target.kind).for_run(experiment, where)
    return run.mesh, run.mirrored, run.url


def start_experiment(
    file: Path,
    *,
    runs: Path = Path("runs"),
    progress: ProgressMode = "rich",
    url: str | None = None,
    rps: float | None = None,
    kubeconfig: str | None = None,
    context: str | None = None,
    dry_run: bool = False,
    experiment: Experiment | None = None,
    resume: bool = False,
    preflight: bool = True,
) -> RunResult:
    """Run the experiment in ``file`` to its end; see the module docstring.

    An interrupt at any moment after the run directory exists ends like any other interrupt:
    rollback, its manifest, the ``interrupted`` event, the state file's final phase, samples,
    ``result.json`` and the report (skipped only after a third signal in a few seconds).
    """
    exp = experiment or load_experiment(file)
    spec_dir = file.resolve().parent
    check_not_running(exp, file)
    if exp.spec.target.kind == "kubernetes" and url is None:
        raise ConfigError(
            "--url: a Kubernetes target needs the URL the load generator sends to "
            "(the service's gateway or an in-cluster address)"
        )
    load_for(exp)  # a traffic mix that cannot be derived is bad input: fail before anything starts
    check_collector(exp)
    exp = recover_before_start(
        exp, kubeconfig=kubeconfig, context=context, resume=resume, dry_run=dry_run
    )
    closers: list[Callable[[], None]] = []
    loads: list[LoadSamples] = []

    def start_up(controller: Controller) -> None:
        """Start the mesh, the load and the live source, attaching each as soon as it exists."""
        mesh, mirrored, mesh_url = _mesh_for(
            exp,
            spec_dir,
            controller.journal.run_dir,
            kubeconfig=kubeconfig,
            context=context,
            dry_run=dry_run,
        )
        closers.append(mesh.close)
        controller.mesh = mesh
        target_url = url or mesh_url
        assert target_url is not None
        plan = plan_from_spec(
            load_for(exp),
            target_url,
            base_dir=spec_dir,
            rps=rps,
            duration=exp.spec.limits.experiment_max_duration + 60,
        )
        run = LoadRun(plan, controller.journal.run_dir / "load")
        closers.append(run.close)
        run.start()
        loads.append(LoadSamples(run))
        source, bounds = _live_source(exp, loads[0], mirrored, closers, controller.journal.run_dir)
        controller.source = source
        controller.make_analyzer = analyzer_factory(exp, bounds)
        if preflight:  # before step 1 routes anything to the candidate
            check_before_routing(exp, mesh, plan.config, target_url, controller.journal.run_dir)

    controller: Controller | None = None
    with signals.interrupts_handled():
        signals.rearm()
        try:
            with signals.deferred():  # nothing half-created: run dir, state, controller, or none
                run_dir = new_run_dir(runs, exp)
                shutil.copyfile(file, run_dir / SPEC)
                controller = _controller(
                    exp, file, run_dir, progress, kubeconfig=kubeconfig, context=context
                )
            outcome = controller.run(start_up)
        except KeyboardInterrupt:
            if controller is None:
                raise  # before the run directory: nothing started, nothing to record
            outcome = controller.end_interrupted()
        finally:
            with signals.deferred():
                for load_source in loads:  # Locust stops gracefully and flushes its last rows
                    load_source.stop()
                    load_source.join(10.0)
                    if controller is not None:
                        with contextlib.suppress(MeshlabError):
                            controller.rows.extend(load_source.poll(0.0))
                if controller is not None and controller.source is not None:
                    with contextlib.suppress(MeshlabError):  # rows the merge held at the end
                        controller.rows.extend(flush_rows(controller.source))
                if controller is not None:
                    controller.progress.close()
                for close in reversed(closers):
                    with contextlib.suppress(Exception):
                        close()
                if controller is not None and controller.journal.notifier is not None:
                    controller.journal.notifier.close()
        # The experiment has ended (signals are only counted now): record it, whatever comes.
        with signals.deferred():
            result = _result(exp, controller, outcome, url or "local mesh")
            write_atomic(run_dir / SAMPLES, samples_to_csv(_ordered_unique(controller.rows)))
            write_atomic(run_dir / RESULT, dump_json(result))
        reports = None
        with signals.skippable() as wanted:
            if wanted:
                reports = build_report(load_run(run_dir))
    return RunResult(outcome, run_dir, result, reports)


def _controller(
    exp: Experiment,
    file: Path,
    run_dir: Path,
    progress: ProgressMode,
    *,
    kubeconfig: str | None,
    context: str | None,
) -> Controller:
    """A controller for a new run: the state file says "starting" from here on."""
    state = ExperimentState(
        exp.metadata.name,
        exp.metadata.namespace,
        exp.spec.strategy,
        exp.spec.target.kind,
        "starting",
        "none",
        str(run_dir.resolve()),
        pid=os.getpid(),
        started_at=time.time(),
        updated_at=time.time(),
        mesh=cluster_record(exp, kubeconfig, context),
    )
    state_file = state_path(exp, file)
    save_state(state_file, state)
    return Controller(
        exp,
        run_dir=run_dir,
        state=state,
        state_file=state_file,
        progress=make_progress(progress),
        notifier=Notifier(exp.spec.notifications.webhooks),
    )


def _ordered_unique(rows: list[Sample]) -> list[Sample]:
    """Start-time order, one row per (request id, mirrored, is control): a shadow with a control
    mirrors one request twice (candidate and control)."""
    seen: set[tuple[str, bool, bool]] = set()
    out = []
    for row in sorted(rows, key=lambda s: s.timestamp):
        key = (row.request_id, row.mirrored, row.arm == "control")
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def _result(
    exp: Experiment, controller: Controller, outcome: Outcome, target: str
) -> dict[str, Any]:
    """The typed :class:`~meshlab.report.result.RunResult`, as the dict ``result.json`` holds."""
    snap = outcome.snapshot
    started = controller.state.started_at
    spec_metrics = {m.name: m for m in exp.spec.analysis.metrics}
    metrics = tuple(
        metric_from_json(m, spec_metrics[m["name"]].quantile if m["name"] in spec_metrics else None)
        for m in (snap.metrics if snap else [])
    )
    decided = None
    if outcome.decision is not None:
        decided = DecidedAfter(
            int(outcome.decision["at_request"]) + 1, float(outcome.decision["at_time"])
        )
    result = ResultRecord(
        experiment=exp.metadata.name,
        namespace=exp.metadata.namespace,
        strategy=exp.spec.strategy,
        target=exp.spec.target.kind,
        endpoint=target,
        verdict=outcome.verdict,
        exit_code=outcome.exit_code,
        reason=outcome.reason,
        final_step=outcome.final_step,
        decided_after=decided,
        metrics=metrics,
        n_baseline=snap.n_baseline if snap else 0,
        n_candidate=snap.n_candidate if snap else 0,
        n_control=snap.n_control if snap else 0,
        guarantee=snap.guarantee if snap else "",
        alpha=exp.spec.analysis.alpha,
        beta=exp.spec.analysis.beta,
        method=exp.spec.analysis.method,
        rollback=outcome.rollback,
        steps=tuple(step_from_json(s) for s in outcome.steps),
        duration_s=round(time.time() - started, 3),
        requests=len(controller.rows),
        evidence=evidence_for(exp, controller, outcome, decided),
        collector=read_collector(controller.journal.run_dir),
    )
    return result.to_json()


def result_json(result: RunResult) -> str:
    """The ``--json`` output of ``start``."""
    return json.dumps(
        {
            **result.result,
            "run_dir": str(result.run_dir),
            "reports": [str(p) for p in result.reports or ()],
        },
        indent=2,
        sort_keys=True,
    )
