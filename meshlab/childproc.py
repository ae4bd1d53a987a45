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
machine). Held signals stay pending and are handled right after, outside ``Popen``.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM me when my parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_INTERRUPTS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Keep SIGINT/SIGTERM/SIGHUP pending (main thread only; elsewhere Python runs no handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _INTERRUPTS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def poll(popen: subprocess.Popen[bytes] | subprocess.Popen[str]) -> int | None:
    """``popen.poll()`` that an interrupt cannot break (see the module docstring)."""
    with signals_held():
        return popen.poll()


def wait(popen: subprocess.Popen[bytes] | subprocess.Popen[str], timeout: float) -> int:
    """``popen.wait(timeout)`` that an interrupt cannot break; TimeoutExpired as usual."""
    with signals_held():
        return popen.wait(timeout=timeout)
