"""``meshlab <strategy> start``, ``status``, ``rollback``, ``report`` and ``demo``."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from meshlab.errors import ConfigError

if TYPE_CHECKING:  # the rest is imported by the commands that use it (fast --help)
    from meshlab.experiment.run import ProgressMode
    from meshlab.experiment.state import ExperimentState

SpecFile = Annotated[Path, typer.Option("-f", "--file", help="The experiment spec (YAML).")]
Target = Annotated[
    str | None,
    typer.Option("--target", help="local | kubernetes (default: the run's, then the spec's)."),
]
Kubeconfig = Annotated[str | None, typer.Option("--kubeconfig", help="Kubeconfig file.")]
Context = Annotated[str | None, typer.Option("--context", help="Kubeconfig context.")]
STRATEGIES = {
    "canary": "a canary experiment: stepped weights to the candidate",
    "shadow": "a shadow experiment: live traffic mirrored to the candidate, answers discarded",
    "bluegreen": "a blue/green experiment: header preview, then the switch",
    "abtest": "an A/B test: requests matching headers go to the candidate",
}


def _start(strategy: str) -> typer.Typer:
    group = typer.Typer(help=f"Run {STRATEGIES[strategy]}.", no_args_is_help=True)

    @group.command("start")
    def start(
        file: SpecFile,
        json_out: Annotated[
            bool, typer.Option("--json", help="Print the result as JSON (for CI).")
        ] = False,
        quiet: Annotated[
            bool, typer.Option("--quiet", "-q", help="Only state changes, no live table.")
        ] = False,
        runs: Annotated[Path, typer.Option("--runs", help="Where run directories go.")] = Path(
            "runs"
        ),
        url: Annotated[
            str | None, typer.Option("--url", help="Load target (needed for a cluster).")
        ] = None,
        rps: Annotated[float | None, typer.Option("--rps", help="Override spec.load.rps.")] = None,
        target: Annotated[
            str | None,
            typer.Option("--target", help="local | kubernetes (overrides spec.target.kind)."),
        ] = None,
        kubeconfig: Annotated[
            str | None,
            typer.Option("--kubeconfig", help="Kubernetes: kubeconfig file (default: as kubectl)."),
        ] = None,
        context: Annotated[
            str | None,
            typer.Option("--context", help="Kubernetes: kubeconfig context (default: current)."),
        ] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Kubernetes: server-side dry run of every apply.")
        ] = False,
        resume: Annotated[
            bool,
            typer.Option(
                "--resume",
                help="Kubernetes: if a run of this experiment died, carry on from its step "
                "instead of rolling it back first.",
            ),
        ] = False,
        skip_preflight: Annotated[
            bool,
            typer.Option(
                "--skip-preflight",
                help="Do not send each version a few payloads before step 1 (experts only).",
            ),
        ] = False,
    ) -> None:
        """Route, drive load, analyse live, promote or abort and roll back; write the report."""
        from meshlab.experiment.run import result_json, start_experiment
        from meshlab.load.inputs import check_experiment_inputs
        from meshlab.spec import load_experiment

        exp = load_experiment(file)
        if exp.spec.strategy != strategy:
            raise ConfigError(
                f"spec.strategy: the file says {exp.spec.strategy}; run 'meshlab {exp.spec.strategy} start'"
            )
        if target is not None:
            from meshlab.registry import MESH

            if target not in MESH.entries:
                raise ConfigError(f"--target: {MESH.unknown(target)}")
            spec = exp.spec.model_copy(
                update={"target": exp.spec.target.model_copy(update={"kind": target})}
            )
            exp = exp.model_copy(update={"spec": spec})
        mode: ProgressMode = "json" if json_out else "quiet" if quiet else "rich"
        check_experiment_inputs(exp, file.resolve().parent)  # before the mesh or Locust start
        result = start_experiment(
            file,
            runs=runs,
            progress=mode,
            url=url,
            rps=rps,
            kubeconfig=kubeconfig,
            context=context,
            dry_run=dry_run,
            experiment=exp,
            resume=resume,
            preflight=not skip_preflight,
        )
        if json_out:
            typer.echo(result_json(result))
        else:
            typer.echo(
                f"{exp.metadata.name}: {result.outcome.verdict.upper()} — {result.outcome.reason}"
            )
            if result.reports is None:
                typer.echo(
                    f"report skipped (interrupted); build it: meshlab report {result.run_dir}"
                )
            else:
                md, html = result.reports
                typer.echo(f"report: {html}  (markdown: {md})")
        raise typer.Exit(result.outcome.exit_code)

    return group


def headline(state: ExperimentState) -> str:
    """The state in two words: where it ended (or that it runs), and whether routes are back.

    "ROLLED BACK" is said only when the rollback was applied (routing step ``rollback``).
    """
    from meshlab.experiment.state import FINAL_PHASES

    if state.phase not in FINAL_PHASES:
        return "RUNNING" if state.process_alive else "INTERRUPTED"
    word = {"rolled-back": "INTERRUPTED"}.get(state.phase, state.phase.upper())
    if state.step == "rollback":
        return f"{word}, ROLLED BACK"
    return word


def status(
    file: SpecFile,
    json_out: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
    target: Target = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Where a running, finished or interrupted experiment stands (exit 3 if never run here)."""
    from meshlab.experiment.recovery import cluster_view, resolve_target
    from meshlab.experiment.state import load_state, state_path
    from meshlab.spec import load_experiment

    exp = load_experiment(file)
    state = load_state(state_path(exp, file))
    where = resolve_target(exp, state, target=target, kubeconfig=kubeconfig, context=context)
    cluster = cluster_view(exp, where) if where.kind == "kubernetes" else None
    if state is None and (cluster is None or (cluster.step == "absent" and not cluster.lease_held)):
        typer.echo(
            f"{exp.metadata.namespace}/{exp.metadata.name}: no record of a run on this machine"
            + ("" if cluster is None else " and no meshlab route in the cluster")
        )
        raise typer.Exit(3)
    if json_out:
        data = {
            **(state.__dict__ if state else {}),
            "process_alive": state.process_alive if state else None,
            "cluster_step": cluster.step if cluster else None,
            "cluster_holder": cluster.holder if cluster else None,
            "cluster_running": cluster.alive if cluster else None,
            "cluster_lease": cluster.run_lease if cluster else None,
        }
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    if state is not None:
        typer.echo(f"{exp.metadata.namespace}/{exp.metadata.name}: {headline(state)}")
        typer.echo(state.describe())
    else:
        typer.echo(f"{exp.metadata.name}: no record on this machine")
    if cluster is not None:
        typer.echo(f"routing read back from the cluster: step {cluster.step}")
        typer.echo(f"meshlab holding the routes: {cluster.holder}")
        typer.echo(f"the experiment's Lease: {cluster.run_lease}")


def rollback(
    file: SpecFile,
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for a running meshlab to roll back.")
    ] = 30.0,
    target: Target = None,
    kubeconfig: Kubeconfig = None,
    context: Context = None,
) -> None:
    """Put all traffic back on the baseline, now, where the run was (state file) or as told."""
    from meshlab.experiment.recovery import cluster_rollback, resolve_target
    from meshlab.experiment.state import FINAL_PHASES, load_state, save_state, state_path
    from meshlab.spec import load_experiment

    exp = load_experiment(file)
    path = state_path(exp, file)
    state = load_state(path)
    where = resolve_target(exp, state, target=target, kubeconfig=kubeconfig, context=context)
    if where.kind == "kubernetes":
        typer.echo(cluster_rollback(exp, where))
    elif state is not None and state.phase not in FINAL_PHASES and state.process_alive:
        # The running meshlab owns the local mesh: ask it to roll back (as Ctrl-C would) and wait.
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            current = load_state(path)
            if current is not None and current.phase in FINAL_PHASES:
                typer.echo(
                    f"{exp.metadata.name}: rolled back by the running meshlab (pid {state.pid}): "
                    f"{current.detail}"
                )
                return
            time.sleep(0.2)
        raise ConfigError(
            f"meshlab pid {state.pid} did not confirm the rollback within {wait:g}s; "
            f"see 'meshlab status -f {file}'"
        )
    else:
        typer.echo(
            f"{exp.metadata.name}: no meshlab process runs its local mesh; the local mesh "
            "stops with meshlab, so nothing routes to the candidate"
        )
    if state is not None and state.phase not in FINAL_PHASES:
        save_state(
            path,
            state.advance(
                phase="rolled-back", step="rollback", detail="rolled back by 'meshlab rollback'"
            ),
        )


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory, e.g. runs/fraud-v2-<time>/")],
) -> None:
    """Rebuild the Markdown and HTML reports from a run directory."""
    from meshlab.report import build_report, load_run

    md, html = build_report(load_run(run_dir))
    typer.echo(f"wrote {md} and {html}")


def demo(
    runs: Annotated[Path, typer.Option("--runs", help="Where run directories go.")] = Path(
        "runs/demo"
    ),
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only state changes, no live table.")
    ] = False,
) -> None:
    """End to end on the local mesh: a good canary (promoted), a bad one (aborted), a bad shadow."""
    from meshlab.experiment.demo import run_demo

    code = run_demo(runs, progress="quiet" if quiet else "rich")
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add the experiment commands to the app."""
    for strategy in STRATEGIES:
        app.add_typer(_start(strategy), name=strategy)
    app.command("status")(status)
    app.command("rollback")(rollback)
    app.command("report")(report)
    app.command("demo")(demo)
