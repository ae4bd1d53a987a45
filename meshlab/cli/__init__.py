"""The ``meshlab`` command line: one typer app, one module per area, errors mapped to exit codes.

Exit codes: 0 success / promoted, 1 aborted, 2 bad input, 3 inconclusive, 4 infrastructure failure,
130 interrupted. Every error a user can cause prints one line on stderr and no traceback (set
``MESHLAB_DEBUG=1`` to see the chained causes).
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

try:  # typer >= 0.20 vendors click; its exceptions are not the installed click's
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import ClickException, UsageError  # type: ignore[assignment]

from meshlab.cli import analyze, experiment, load, mesh, plan, render, serve
from meshlab.errors import EXIT_BAD_INPUT, EXIT_INFRASTRUCTURE, EXIT_INTERRUPTED, MeshlabError
from meshlab.experiment import signals

app = typer.Typer(
    name="meshlab",
    help="Test a new model version against the live one: Istio routing, load, sequential statistics.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
render.register(app)
mesh.register(app)
load.register(app)
analyze.register(app)
experiment.register(app)
plan.register(app)
serve.register(app)


def _fail(message: str, code: int) -> int:
    print(f"meshlab: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``meshlab`` console script; returns the exit code."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="meshlab", standalone_mode=False)
    except UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        return _fail(exc.format_message().replace("\n", " ") + hint, EXIT_BAD_INPUT)
    except ClickException as exc:
        return _fail(exc.format_message().replace("\n", " "), EXIT_BAD_INPUT)
    except (typer.Abort, KeyboardInterrupt):
        return _fail("interrupted", EXIT_INTERRUPTED)
    except MeshlabError as exc:
        if os.environ.get("MESHLAB_DEBUG"):
            traceback.print_exc()
        return _fail(str(exc).replace("\n", " "), exc.exit_code)
    except Exception as exc:  # a bug: still one line unless debugging
        if os.environ.get("MESHLAB_DEBUG"):
            traceback.print_exc()
        return _fail(
            f"internal error: {type(exc).__name__}: {exc} (set MESHLAB_DEBUG=1 for details)",
            EXIT_INFRASTRUCTURE,
        )
    code = result if isinstance(result, int) else 0
    if code == EXIT_INTERRUPTED:  # typer turns KeyboardInterrupt into a silent Exit(130)
        return _fail("interrupted", EXIT_INTERRUPTED)
    return code


def entrypoint() -> None:
    """Console-script wrapper: exit with :func:`main`'s code; SIGTERM acts like Ctrl-C throughout."""
    signals.install()
    sys.exit(main())
