"""Asking about a child with the interrupt signals held (meshlab.childproc).

A handler that raises inside ``Popen.poll`` can leave Popen's reaping lock taken, after which the
dead child is never reaped (``mesh up`` exited 4 on SIGTERM about once in ten loaded runs). Here:
a SIGTERM sent while a poll holds the signals is handled right after it, not inside it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import FrameType

from meshlab.childproc import poll, signals_held, wait


def test_an_interrupt_during_a_held_poll_is_handled_after_it() -> None:
    seen: list[str] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        seen.append("handled")

    previous = signal.signal(signal.SIGTERM, handler)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        with signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            assert seen == []  # pending, not run inside the held section
            seen.append("still held")
        assert seen == ["still held", "handled"]
        assert wait(child, 10.0) == 0 and poll(child) == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if child.poll() is None:
            child.kill()
            child.wait(timeout=5)
