"""The ``meshlab`` typer app: one module per area registers its commands; help tidied for people.

Adding a command: a new ``meshlab/cli/<name>.py`` with ``register(app)``, and one import plus one
``register`` line below. Command modules import heavy libraries inside their functions.
"""

from __future__ import annotations

from typing import Annotated

import typer

from meshlab import __version__
from meshlab.cli import analyze, experiment, load, mesh, plan, render, serve

try:  # typer >= 0.20 vendors click
    from typer._click import Command, Context
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import Command, Context  # type: ignore[assignment]

app = typer.Typer(
    name="meshlab",
    help="Test a new model version against the live one: Istio routing, load, sequential statistics.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"meshlab {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print meshlab's version and exit.",
            is_eager=True,
            callback=_print_version,
        ),
    ] = False,
) -> None:
    """Test a new model version against the live one: Istio routing, load, sequential statistics."""


render.register(app)
mesh.register(app)
load.register(app)
analyze.register(app)
experiment.register(app)
plan.register(app)
serve.register(app)


def tidy_help(command: Command) -> None:
    """No ``<bool>`` after a flag, no ``<str>`` after a text option: the option's name instead.

    typer labels every option with its Python type; a flag takes no value, and "str" says nothing a
    user can act on, so a text option shows what it wants (``--url URL``). Applied to every
    command and subcommand, including their ``--help`` options.
    """
    params = list(command.params)
    help_option = command.get_help_option(Context(command))
    if help_option is not None:
        params.append(help_option)
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.metavar is None and param.param_type_name == "option":
            display_type = getattr(param, "display_type", None)
            if display_type is not None and display_type(Context(command)) == "<str>":
                param.metavar = (param.name or "value").upper()
    subcommands: dict[str, Command] = getattr(command, "commands", None) or {}
    for sub in subcommands.values():
        tidy_help(sub)


def command() -> Command:
    """The app as a click command, help tidied."""
    built = typer.main.get_command(app)
    tidy_help(built)
    return built
