"""Child processes of the local mesh: started in their own process group, polled, always stopped.

Every child (model servers, Envoys) runs in a new session, so a Ctrl-C typed at meshlab's terminal
reaches meshlab alone and meshlab stops the children in order; stopping signals the whole group
(SIGTERM, then SIGKILL after a grace period), so grandchildren go too. On Linux each child also asks
the kernel for SIGTERM when meshlab's process dies (``PR_SET_PDEATHSIG``), the only protection
against meshlab itself being SIGKILLed. The kernel ties that signal to the *thread* that started
the child, so start children from a thread that lives as long as the mesh (the main thread).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from meshlab.childproc import die_with_parent, poll
from meshlab.childproc import wait as wait_child
from meshlab.errors import MeshError


@dataclass
class Child:
    """One started process: its name for messages, its Popen handle and its log file."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path
    stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exit_code(self) -> int | None:
        """None while running, else the exit code (negative: killed by that signal)."""
        return poll(self.popen)

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the child's output, joined on one line for an error message."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(tail)

    def describe_exit(self) -> str:
        code = self.exit_code()
        how = (
            f"was killed by signal {-code}"
            if code is not None and code < 0
            else f"exited with {code}"
        )
        tail = self.log_tail()
        return f"{self.name} (pid {self.pid}) {how}" + (
            f"; its output ends: {tail}" if tail else ""
        )


def start_child(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Child:
    """Start ``argv`` in its own session (process group), output to ``log_path``."""
    full_env = {**os.environ, **(env or {})}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        try:
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            raise MeshError(f"{name}: cannot start {argv[0]!r}: {exc.strerror}") from exc
    return Child(name, list(argv), popen, log_path)


def stop_child(child: Child, grace: float = 5.0) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds; reap the child."""
    if child.stopped:
        return
    child.stopped = True
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(child.pid, sig)
            if sig == signal.SIGTERM:  # a stopped (SIGSTOP) process acts on SIGTERM once continued
                os.killpg(child.pid, signal.SIGCONT)
        except ProcessLookupError:
            break  # the whole group is gone already
        try:
            wait_child(child.popen, wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure no other member of its group lingers.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        break
    if poll(child.popen) is None:
        # Still not reaped: the group signal may have missed it (ESRCH above) or it is slow to die
        # on a loaded machine. SIGKILL the process itself and give it longer; a child that outlives
        # that is named, never an internal error turning a clean stop into a crash.
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
        try:
            wait_child(child.popen, 15.0)
        except subprocess.TimeoutExpired:
            raise MeshError(
                f"{child.name} (pid {child.pid}) is still running after SIGKILL; stop it by hand"
            ) from None


def kill_now(child: Child) -> None:
    """SIGKILL the child's process group and reap it (a hung or stopped child that holds ports)."""
    child.stopped = True
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        wait_child(child.popen, 5.0)


_probe = threading.local()  # what the last http_ok of this thread got, for wait_until's message


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True if a GET of ``url`` answers 2xx; what it got otherwise is kept for the timeout message."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = int(response.status)
            _probe.last = f"{url} last answered {status}"
            return 200 <= status < 300
    except urllib.error.HTTPError as exc:
        body = exc.read(200).decode("utf-8", errors="replace").strip().replace("\n", " ")
        _probe.last = f"{url} last answered {exc.code} {body}".rstrip()
        return False
    except (urllib.error.URLError, OSError, ValueError) as exc:
        _probe.last = f"{url} last gave no answer ({getattr(exc, 'reason', exc)})"
        return False


def wait_until(
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    child: Child | None = None,
    interval: float = 0.05,
) -> None:
    """Poll ``ready`` until it holds; MeshError if ``timeout`` passes or ``child`` exits first.

    When ``ready`` polls a URL with :func:`http_ok`, the error says what the URL last answered.
    """
    deadline = time.monotonic() + timeout
    _probe.last = ""
    while True:
        if child is not None and child.exit_code() is not None:
            raise MeshError(f"{child.describe_exit()} before {what}")
        if ready():
            return
        if time.monotonic() >= deadline:
            answered = f" ({_probe.last})" if getattr(_probe, "last", "") else ""
            tail = f"; {child.name}'s output ends: {child.log_tail()}" if child is not None else ""
            raise MeshError(
                f"{what} did not happen within {timeout:g}s"
                + answered
                + tail
                + "; check the command, or raise spec.local.startupTimeout"
            )
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


class ProcessGroup:
    """The children of one mesh, stopped in reverse start order (front first, model servers last)."""

    def __init__(self, grace: float = 5.0) -> None:
        self.children: list[Child] = []
        self.grace = grace

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Child:
        child = start_child(name, argv, log_path, env, cwd)
        self.children.append(child)
        return child

    def dead(self) -> list[Child]:
        """Children that exited although nobody stopped them."""
        return [c for c in self.children if not c.stopped and c.exit_code() is not None]

    def wait_any_exit(self, timeout: float | None = None, interval: float = 0.2) -> Child | None:
        """Block until a child dies on its own (returned) or ``timeout`` seconds pass (None)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            dead = self.dead()
            if dead:
                return dead[0]
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(interval)

    def stop_all(self) -> None:
        """Stop every child; never raises for a child that is already gone."""
        for child in reversed(self.children):
            stop_child(child, self.grace)

    @property
    def pids(self) -> dict[str, int]:
        return {c.name: c.pid for c in self.children}
