"""The ``meshlab`` command line: the entry point, errors mapped to exit codes, nothing heavy.

Exit codes: 0 success / promoted, 1 aborted, 2 bad input, 3 inconclusive, 4 infrastructure failure,
130 interrupted. Every error a user can cause prints one line on stderr and no traceback (set
``MESHLAB_DEBUG=1`` to see the chained causes).

This module imports almost nothing, so that :func:`entrypoint` installs the interrupt handler before
any import that takes time: a Ctrl-C at any moment, during imports included, ends with one line
and exit 130, never a traceback. The typer app lives in :mod:`meshlab.cli.commands` (commands are
registered there) and each command imports its heavy libraries when it runs (issue 11).
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from typing import Any

from meshlab.errors import EXIT_BAD_INPUT, EXIT_INFRASTRUCTURE, EXIT_INTERRUPTED, MeshlabError
from meshlab.experiment import signals


def __getattr__(name: str) -> Any:
    """``meshlab.cli.app`` (the typer app) is built on first use, not on import."""
    if name == "app":
        from meshlab.cli.commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _fail(message: str, code: int) -> int:
    print(f"meshlab: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    try:
        import typer

        try:  # typer >= 0.20 vendors click; its exceptions are not the installed click's
            from typer._click.exceptions import ClickException, UsageError
        except ImportError:  # pragma: no cover - older typer uses click itself
            from click import ClickException, UsageError  # type: ignore[assignment]
    except KeyboardInterrupt:  # during the imports
        return _fail("interrupted", EXIT_INTERRUPTED)
    try:
        from meshlab.cli.commands import command

        result = command().main(args=argv, prog_name="meshlab", standalone_mode=False)
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
        if signals.interrupted():  # a library wrapped our KeyboardInterrupt (pydantic-core does)
            return _fail("interrupted", EXIT_INTERRUPTED)
        return _fail(
            f"internal error: {type(exc).__name__}: {exc} (set MESHLAB_DEBUG=1 for details)",
            EXIT_INFRASTRUCTURE,
        )
    code = result if isinstance(result, int) else 0
    if code == EXIT_INTERRUPTED:  # typer turns KeyboardInterrupt into a silent Exit(130)
        return _fail("interrupted", EXIT_INTERRUPTED)
    return code


def entrypoint() -> None:
    """Console-script wrapper: exit with :func:`main`'s code; SIGTERM acts like Ctrl-C throughout.

    The handler goes in first, before the imports that take time; once :func:`main` has returned,
    signals are only counted, so none turns into a traceback while the interpreter exits.
    """
    signals.install()
    try:
        code = main()
    except KeyboardInterrupt:  # in the few bytecodes around main's own handlers
        code = _fail("interrupted", EXIT_INTERRUPTED)
    signals.hold()  # a signal from now on neither raises nor kills: the exit code stands
    if code == EXIT_INTERRUPTED:
        _exit_interrupted()
    sys.exit(code)


def _exit_interrupted() -> None:
    """Exit 130 for sure, after the atexit hooks and with the output flushed.

    Under ``python -m meshlab``, CPython 3.11 sometimes ends a process whose ``KeyboardInterrupt``
    meshlab caught (during an import) by re-sending itself SIGINT: status -2 instead of 130, with
    ``SystemExit(130)`` raised (measured: 4 to 8 runs in 30 with a signal 0.15 s into the imports).
    Its flag for that is internal, so meshlab leaves through ``os._exit`` after the usual clean-up;
    every process meshlab started is stopped before this point.
    """
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(EXIT_INTERRUPTED)
