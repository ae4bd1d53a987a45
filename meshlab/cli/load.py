"""``meshlab load``: send the spec's inference load to a URL and write the samples file."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from meshlab.errors import ConfigError, LoadError

if TYPE_CHECKING:
    from meshlab.load import LoadRun, SampleBatch

EXIT_INTERRUPTED = 130


def _duration(text: str | None) -> float | None:
    if text is None:
        return None
    from pydantic_core import PydanticCustomError

    from meshlab.spec.base import parse_duration

    try:
        return parse_duration(text)
    except PydanticCustomError as exc:
        raise ConfigError(f"--duration: {exc.message()}") from None


def load_command(
    file: Annotated[Path, typer.Option("-f", "--file", help="The experiment spec (YAML).")],
    url: Annotated[str, typer.Option("--url", help="Where to send requests: http://HOST:PORT")],
    rps: Annotated[
        float | None, typer.Option("--rps", help="Target requests/s (default: spec.load).")
    ] = None,
    duration: Annotated[
        str | None, typer.Option("--duration", help="How long, e.g. 60s or 2m (default: spec).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="The samples file to write (CSV).")] = Path(
        "run/samples.csv"
    ),
    workers: Annotated[
        int | None, typer.Option("--workers", help="Local Locust workers (0 = one process).")
    ] = None,
    users: Annotated[
        int | None, typer.Option("--users", help="Concurrent users the rate is spread over.")
    ] = None,
) -> None:
    """Drive inference load with Locust and record every request in a samples file.

    Stops at the end of the duration, on Ctrl-C or SIGTERM (the rows recorded so far are kept).
    """
    from meshlab.load import plan_from_spec, record_load
    from meshlab.spec import load_experiment

    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--url: {url!r} must start with http:// (e.g. http://127.0.0.1:8080)")
    if rps is not None and not rps > 0:
        raise ConfigError(f"--rps: {rps} must be above 0")
    if workers is not None and workers < 0:
        raise ConfigError(f"--workers: {workers} must be 0 or more")
    if users is not None and users < 1:
        raise ConfigError(f"--users: {users} must be at least 1")
    experiment = load_experiment(file)
    plan = plan_from_spec(
        experiment.spec.load,
        url,
        base_dir=file.parent,
        rps=rps,
        duration=_duration(duration),
        workers=workers,
        users=users,
    )
    interrupted: list[int] = []

    def wire_signals(run: LoadRun) -> None:
        def on_term(signum: int, frame: FrameType | None) -> None:
            interrupted.append(signum)
            run.stop()

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, on_term)

    # Locust runs in its own process group, so Ctrl-C reaches only meshlab, which stops it cleanly.
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    span: list[float] = []  # first and last start time written

    def track(batch: SampleBatch) -> None:
        if batch.samples:
            span[:] = [span[0] if span else batch.samples[0].timestamp, batch.samples[-1].timestamp]

    try:
        result = record_load(plan, out, on_start=wire_signals, on_batch=track)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    rate = (result.samples - 1) / (span[1] - span[0]) if span and span[1] > span[0] else 0.0
    typer.echo(
        f"wrote {result.samples} samples to {out}"
        + (f" at {rate:.1f} req/s" if rate else "")
        + (f"; {len(result.unattributed)} without an arm" if result.unattributed else "")
        + (f"; {len(result.late)} late" if result.late else ""),
        err=True,
    )
    target = plan.config.rps
    if rate and target and not (plan.config.steps or plan.config.ramp) and rate < 0.95 * target:
        typer.echo(
            f"warning: reached {rate:.1f} req/s of the {target:g} asked; responses are too slow "
            f"for {plan.config.users} users: raise --users (or spec.load.users)",
            err=True,
        )
    if result.lost:
        raise LoadError(
            f"Locust counted {result.locust_requests} requests but {result.recorded} were "
            f"recorded; see Locust's logs in {out.parent / ('.' + out.stem + '-locust')}"
        )
    if interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)


def register(app: typer.Typer) -> None:
    """Add ``meshlab load`` to the app."""
    app.command("load")(load_command)
