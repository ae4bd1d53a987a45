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
    ) -> None:
        """Route, drive load, analyse live, promote or abort and roll back; write the report."""
        from meshlab.experiment.run import result_json, start_experiment
        from meshlab.spec import load_experiment

        exp = load_experiment(file)
        if exp.spec.strategy != strategy:
            raise ConfigError(
                f"spec.strategy: the file says {exp.spec.strategy}; run 'meshlab {exp.spec.strategy} start'"
            )
        if target is not None:
            if target not in ("local", "kubernetes"):
                raise ConfigError(f"--target: {target!r} is not 'local' or 'kubernetes'")
            spec = exp.spec.model_copy(
                update={"target": exp.spec.target.model_copy(update={"kind": target})}
            )
            exp = exp.model_copy(update={"spec": spec})
        mode: ProgressMode = "json" if json_out else "quiet" if quiet else "rich"
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
) -> None:
    """Where a running, finished or interrupted experiment stands (exit 3 if never run here)."""
    from meshlab.experiment.state import load_state, state_path
    from meshlab.spec import load_experiment

    exp = load_experiment(file)
    state = load_state(state_path(exp))
    if state is None:
        typer.echo(
            f"{exp.metadata.namespace}/{exp.metadata.name}: no record of a run on this machine"
        )
        raise typer.Exit(3)
    cluster = None
    if exp.spec.target.kind == "kubernetes" and state.target == "kubernetes":
        from meshlab.mesh.kubernetes import KubernetesMesh

        routing = KubernetesMesh.from_spec(exp).status()
        cluster = routing.step if routing else "absent"
    if json_out:
        data = {**state.__dict__, "process_alive": state.process_alive, "cluster_step": cluster}
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    typer.echo(f"{exp.metadata.namespace}/{exp.metadata.name}: {headline(state)}")
    typer.echo(state.describe())
    if cluster is not None:
        typer.echo(f"routing read back from the cluster: step {cluster}")


def rollback(
    file: SpecFile,
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for a running meshlab to roll back.")
    ] = 30.0,
) -> None:
    """Put all traffic back on the baseline, now."""
    from meshlab.experiment.state import FINAL_PHASES, load_state, save_state, state_path
    from meshlab.spec import load_experiment

    exp = load_experiment(file)
    path = state_path(exp)
    state = load_state(path)
    if exp.spec.target.kind == "kubernetes":
        from meshlab.mesh.kubernetes import KubernetesMesh

        mesh = KubernetesMesh.from_spec(exp)
        try:
            mesh.rollback()
        finally:
            mesh.close()
        typer.echo(f"{exp.metadata.name}: routes rolled back to the baseline in the cluster")
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
