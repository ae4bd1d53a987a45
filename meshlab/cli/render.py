"""``meshlab render`` and ``meshlab validate``: the spec in, Istio or Gateway API manifests out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meshlab.errors import ConfigError
from meshlab.registry import ROUTING

SpecFile = Annotated[Path, typer.Option("-f", "--file", help="The experiment spec (YAML).")]


def render_command(
    file: SpecFile,
    step: Annotated[
        str, typer.Option("--step", help="1-based step, 'promoted' or 'rollback'.")
    ] = "1",
    all_: Annotated[
        bool,
        typer.Option("--all", help="Every step, promoted and rollback, one file each (needs -o)."),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Directory for --all (created if missing)."),
    ] = None,
    routing: Annotated[
        str | None,
        typer.Option(
            "--routing",
            help=f"{' | '.join(ROUTING.names)} (overrides spec.target.routing).",
        ),
    ] = None,
) -> None:
    """Render a step's routing as YAML for kubectl apply -f -.

    Istio: DestinationRule + VirtualService. Gateway API: one Service per version + HTTPRoute.
    With --all and spec.metrics.collector, also the collector's Service and policies and the
    KServe logger patches.
    """
    from meshlab.manifests import all_steps, render_step, step_by_name, step_filename, to_yaml
    from meshlab.manifests.kserve import collector_files
    from meshlab.spec import load_experiment

    experiment = load_experiment(file)
    if routing is not None and routing not in ROUTING.entries:
        raise ConfigError(f"--routing: {ROUTING.unknown(routing)}")
    if not all_:
        if output is not None:
            raise ConfigError("-o/--output goes with --all; without it manifests go to stdout")
        docs = render_step(experiment, step_by_name(experiment, step), routing)
        typer.echo(to_yaml(docs), nl=False)
        return
    if output is None:
        raise ConfigError("--all writes one file per step: give a directory with -o DIR")
    if output.exists() and not output.is_dir():
        raise ConfigError(f"-o: {output} exists and is not a directory")
    # Render everything before writing anything, so a failure never leaves a partial directory.
    files = {
        output / step_filename(i, s.name): to_yaml(render_step(experiment, s, routing))
        for i, s in enumerate(all_steps(experiment), start=1)
    }
    collector = collector_files(experiment.spec.metrics.collector, experiment.metadata.namespace)
    files.update({output / name: to_yaml(docs) for name, docs in collector.items()})
    output.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {len(files)} files to {output}", err=True)


def validate_command(file: SpecFile) -> None:
    """Check the spec, that its routing API can express it, and that its payload files parse.

    Exit 0, or 2 with one line naming the field and the fix.
    """
    from meshlab.load.inputs import check_experiment_inputs
    from meshlab.manifests import all_steps, plan, render_step
    from meshlab.spec import load_experiment

    experiment = load_experiment(file)
    steps = plan(experiment)
    for state in all_steps(experiment):  # what the routing API cannot express is bad input too
        render_step(experiment, state)
    rows = check_experiment_inputs(experiment, file.resolve().parent)
    typer.echo(
        f"{file}: valid {experiment.spec.strategy} experiment '{experiment.metadata.name}' "
        f"with {len(steps)} step{'s' if len(steps) != 1 else ''}: "
        + ", ".join(s.label for s in steps)
        + (f"; {rows} payloads" if rows else "")
    )


def register(app: typer.Typer) -> None:
    """Add ``render`` and ``validate`` to the app."""
    app.command("render")(render_command)
    app.command("validate")(validate_command)
