"""Child processes that die with meshlab, even when meshlab itself is SIGKILLed.

``die_with_parent`` is a ``preexec_fn``: between fork and exec it asks the Linux kernel to send the
child SIGTERM when its parent dies (``PR_SET_PDEATHSIG``). The kernel ties that to the *thread*
that started the child, so start long-lived children from the main thread. Elsewhere it does
nothing; process groups and explicit stops still apply.
"""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM me when my parent dies (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
