"""``meshlab mesh up``: run an experiment's local mesh (model servers + Envoy) until stopped.

It prints the URL to send requests to and the admin/telemetry URLs, then waits. Ctrl-C or SIGTERM
stops every process it started and exits 0; a child that dies on its own stops the rest and exits
4 with the child's last output; a failure to start stops whatever had started. With
``--mirrored-samples FILE`` the candidate's mirrored responses are written to a samples CSV as they
arrive (rows ``mirrored=1``, paired with the primaries by ``request_id``).
"""

from __future__ import annotations

import signal
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from meshlab.errors import ConfigError, MeshError

if TYPE_CHECKING:
    from meshlab.manifests import Step
    from meshlab.mesh.local import LocalMesh
    from meshlab.samples import SampleWriter

# Mirrored rows younger than this are held back so the CSV stays in start-time order.
SETTLE_S = 2.0


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised in the main thread so ``finally`` blocks stop the mesh."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def up_command(
    file: Annotated[Path, typer.Option("-f", "--file", help="The experiment spec (YAML).")],
    step: Annotated[
        str, typer.Option("--step", help="1-based step, 'promoted' or 'rollback'.")
    ] = "1",
    keep_run_dir: Annotated[
        bool, typer.Option("--keep-run-dir", help="Keep Envoy configs and logs after stopping.")
    ] = False,
    mirrored_samples: Annotated[
        Path | None,
        typer.Option(
            "--mirrored-samples",
            help="Write the candidate's mirrored responses to this samples CSV (shadow steps).",
        ),
    ] = None,
) -> None:
    """Start the model servers and Envoy for a step, print the URL, run until Ctrl-C/SIGTERM."""
    from meshlab.manifests import step_by_name
    from meshlab.mesh.local import LocalMesh
    from meshlab.samples import SampleWriter
    from meshlab.spec import load_experiment

    experiment = load_experiment(file)
    chosen = step_by_name(experiment, step)
    with ExitStack() as files:
        writer = None
        if mirrored_samples is not None:
            try:
                stream = files.enter_context(
                    mirrored_samples.open("w", newline="", encoding="utf-8")
                )
            except OSError as exc:
                raise ConfigError(f"--mirrored-samples: cannot write {mirrored_samples}") from exc
            writer = SampleWriter(stream)
        mesh = LocalMesh(
            experiment,
            here=file.resolve().parent,
            keep_run_dir=keep_run_dir,
            capture_mirrored=writer is not None,
        )
        _run(mesh, chosen, writer)
    typer.echo("stopped; every process meshlab started has ended", err=True)


def _run(mesh: LocalMesh, chosen: Step, writer: SampleWriter | None) -> None:
    # SIGINT is handled explicitly: a shell starting meshlab in the background sets it to ignored,
    # and Python then never raises KeyboardInterrupt. A closed terminal (SIGHUP) also stops.
    handlers = {
        signal.SIGTERM: _raise_terminated,
        signal.SIGHUP: _raise_terminated,
        signal.SIGINT: signal.default_int_handler,
    }
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        mesh.start(chosen)
        for name, pid in mesh.pids.items():
            typer.echo(f"started {name} (pid {pid})", err=True)
        typer.echo(f"run directory: {mesh.run_dir}", err=True)
        for name, url in mesh.prometheus_urls.items():
            typer.echo(f"telemetry ({name}): {url}", err=True)
        typer.echo(f"step {chosen.name} ({chosen.label}) in force; Ctrl-C to stop", err=True)
        typer.echo(f"mesh URL: {mesh.url}")
        while (died := mesh.wait(timeout=0.5)) is None:
            if writer is not None:
                writer.write(mesh.mirrored_samples(settle=SETTLE_S))
        raise MeshError(f"stopping the local mesh: {died}")
    except (KeyboardInterrupt, Terminated):
        typer.echo("stopping the local mesh", err=True)
    finally:
        try:
            if writer is not None and not mesh.group.dead():
                time.sleep(0.2)  # copies of the last requests finish just after their primaries
                writer.write(mesh.mirrored_samples())
        finally:
            mesh.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def register(app: typer.Typer) -> None:
    """Add the ``mesh`` command group (``meshlab mesh up``) to the app."""
    mesh_app = typer.Typer(
        help="The embedded local mesh: real Envoy in front of local models.", no_args_is_help=True
    )
    mesh_app.command("up")(up_command)
    app.add_typer(mesh_app, name="mesh")
