"""Ctrl-C and SIGTERM as one interrupt that cannot be lost.

The handler raises ``KeyboardInterrupt`` (to break out of blocking calls) *and* sets a flag. A raise
can be swallowed when the signal lands in a context Python ignores exceptions from (an at-fork hook
while a child process starts, a ``__del__``, a logging lock), so the controller also checks the flag
at every look and re-raises: an interrupt always ends in a rollback.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

INTERRUPTED = threading.Event()


def _handler(signum: int, frame: FrameType | None) -> None:
    INTERRUPTED.set()
    raise KeyboardInterrupt


def raise_if_interrupted() -> None:
    """Re-raise an interrupt whose ``KeyboardInterrupt`` was swallowed somewhere."""
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt


def install() -> None:
    """Route SIGINT and SIGTERM through the flag-setting handler (main thread only)."""
    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)


@contextlib.contextmanager
def interrupts_handled() -> Iterator[None]:
    """Install the handler for the block, from a clean flag; restore the previous handlers after."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    INTERRUPTED.clear()
    install()
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
