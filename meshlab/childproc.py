"""Child processes that die with meshlab, even when meshlab itself is SIGKILLed.

``die_with_parent`` is a ``preexec_fn``: between fork and exec it asks the Linux kernel to send the
child SIGTERM when its parent dies (``PR_SET_PDEATHSIG``). The kernel ties that to the *thread*
that started the child, so start long-lived children from the main thread. Elsewhere it does
nothing; process groups and explicit stops still apply.

``poll``/``wait`` ask about a child with the interrupt signals held. ``subprocess.Popen`` takes a
lock before it reaps a child and releases it in a ``finally`` it has not yet entered; a Python
signal handler that raises (Ctrl-C's ``KeyboardInterrupt``, ``mesh up``'s SIGTERM) between the two
leaves the lock taken for good, and the dead child is then never reaped: every later ``wait``
times out on a zombie (seen as ``mesh up`` exiting 4 on SIGTERM, about one run in ten on a loaded
machine). Held signals are recorded and raised again right after, outside ``Popen``.

Blocking the signals in the main thread is not enough: in a process with other threads the kernel
delivers a process-directed signal to a thread that does not block it, and Python still runs the
handler in the main thread at its next instruction (CI saw exactly that). So for the held section
the main thread's handlers are swapped for one that only records, and each recorded signal is
raised again once the original handlers are back.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM me when my parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_INTERRUPTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Run no SIGINT/SIGTERM/SIGHUP handler inside the block; raise each one that came right after.

    Only the main thread runs Python signal handlers, so elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        came.append(signum)

    previous: dict[int, Handler] = {}
    try:
        for held in _INTERRUPTS:
            if signal.getsignal(held) is not None:  # None: installed outside Python, left alone
                previous[held] = signal.signal(held, record)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in came:
            signal.raise_signal(signum)


def poll(popen: subprocess.Popen[bytes] | subprocess.Popen[str]) -> int | None:
    """``popen.poll()`` that an interrupt cannot break (see the module docstring)."""
    with signals_held():
        return popen.poll()


def wait(popen: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float) -> int:
    """``popen.wait(timeout)`` that an interrupt cannot break; TimeoutExpired as usual."""
    with signals_held():
        return popen.wait(timeout=timeout)
