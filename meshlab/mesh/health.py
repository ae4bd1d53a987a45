"""Watching the local mesh for faults: components that die, and components that stop answering.

Each component of the local mesh (a model server, a sidecar Envoy, the outbound Envoy) is watched
by one daemon thread that, every ``interval`` seconds,

* polls its process: an exit on its own (not stopped by meshlab) is a fault at once,
  ``killed by signal 9`` or ``exited with code 1``;
* GETs its probe URL with a short ``timeout`` (the model server's ready URL, or an Envoy's admin
  ``/ready``): any HTTP answer, whatever its status, counts as answering. When no answer came for
  ``unresponsive_after`` seconds, counted from the first failed probe, the component "stopped
  answering" (a SIGSTOPped or deadlocked process: the kernel still accepts its connections, so
  only an answer proves it is alive).

Faults are sticky: once seen, a fault stays in :meth:`FaultWatch.faults` for the rest of the run,
so every look of the controller reads the same sentence. ``since`` is when the death was first
seen, or when the first unanswered probe of a silent component began. The
watch never starts or stops a process; the mesh does (from its main thread, see ``processes``).
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from meshlab.clock import Clock
from meshlab.mesh.base import Fault, FaultRole
from meshlab.mesh.processes import Child


@dataclass(frozen=True)
class ProbeSettings:
    """How often and how patiently the watch probes each component (seconds)."""

    interval: float = 0.5
    timeout: float = 1.0
    unresponsive_after: float = 3.0

    def __post_init__(self) -> None:
        if min(self.interval, self.timeout, self.unresponsive_after) <= 0:
            raise ValueError("probe interval, timeout and unresponsive_after must be > 0 seconds")


def answers(url: str, timeout: float) -> bool:
    """True if ``url`` answers HTTP at all within ``timeout`` (any status counts)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read(0)
            return True
    except urllib.error.HTTPError:
        return True  # a 4xx/5xx is an answer: the process is alive
    except (urllib.error.URLError, OSError, ValueError):
        return False


def process_state(pid: int) -> str:
    """The one-letter state of ``pid`` from ``/proc`` ("T" = stopped), or "" if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[0] if fields else ""


def exit_detail(code: int) -> str:
    """``killed by signal 9`` / ``exited with code 1`` for a Popen return code."""
    return f"killed by signal {-code}" if code < 0 else f"exited with code {code}"


@dataclass
class Component:
    """One watched part of the mesh: whose it is, how it is named, its process and probe URL."""

    role: FaultRole
    name: str  # "candidate model server", "candidate sidecar Envoy", "outbound Envoy"
    child: Child | None  # None: a server meshlab did not start (``url:``)
    probe_url: str | None
    where: str = ""  # for a server without a process: its URL
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def label(self) -> str:
        if self.child is not None:
            return f"{self.name} (pid {self.child.pid})"
        return f"{self.name} at {self.where}" if self.where else self.name


class FaultWatch:
    """Probes every component of one mesh on background threads; :meth:`faults` reads the result."""

    def __init__(self, settings: ProbeSettings | None = None, clock: Clock = time.time) -> None:
        self.settings = settings or ProbeSettings()
        self._clock = clock
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}  # by component label, first sighting only
        self._components: list[Component] = []
        self._threads: list[threading.Thread] = []
        self._closed = False

    def watch(
        self,
        role: FaultRole,
        name: str,
        child: Child | None,
        probe_url: str | None,
        where: str = "",
    ) -> Component:
        """Start watching one component (its thread starts at once)."""
        component = Component(role, name, child, probe_url, where)
        with self._lock:
            if self._closed:
                return component
            self._components.append(component)
        thread = threading.Thread(
            target=self._run, args=(component,), name=f"meshlab-watch {name}", daemon=True
        )
        self._threads.append(thread)
        thread.start()
        return component

    def forget(self, component: Component) -> None:
        """Stop watching ``component`` (it was replaced); a fault it had stays reported."""
        component.stop.set()
        with self._lock:
            if component in self._components:
                self._components.remove(component)

    def record(self, role: FaultRole, label: str, detail: str, since: float) -> Fault:
        """Note a fault seen by someone else (the mesh, while rolling back); first sighting wins."""
        with self._lock:
            if label not in self._faults:
                self._faults[label] = Fault(role, label, detail, since)
            return self._faults[label]

    def faults(self) -> list[Fault]:
        """Every fault seen so far, oldest first; a death is checked right now too."""
        with self._lock:
            components = list(self._components)
        for component in components:
            self._check_exit(component)
        with self._lock:
            return sorted(self._faults.values(), key=lambda f: f.since)

    def close(self) -> None:
        """Stop every probe thread (before the mesh stops its processes) and wait for them."""
        with self._lock:
            self._closed = True
            components = list(self._components)
        for component in components:
            component.stop.set()
        deadline = time.monotonic() + self.settings.timeout + 1.0
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------------------ internals
    def _check_exit(self, component: Component) -> bool:
        child = component.child
        if child is None:
            return False
        code = child.exit_code()  # read before ``stopped``: stop_child sets it before signalling
        if code is None or child.stopped or component.stop.is_set():
            return False
        self.record(component.role, component.label, exit_detail(code), self._clock())
        return True

    def _run(self, component: Component) -> None:
        settings = self.settings
        first_failure: float | None = None
        while not component.stop.wait(settings.interval):
            if self._check_exit(component):
                return
            if component.probe_url is None:
                continue
            began = self._clock()
            ok = answers(component.probe_url, settings.timeout)
            if component.stop.is_set() or self._check_exit(component):
                return
            if ok:
                first_failure = None
                continue
            first_failure = began if first_failure is None else first_failure
            silent = self._clock() - first_failure
            if silent >= settings.unresponsive_after:
                stopped = component.child is not None and process_state(component.child.pid) == "T"
                detail = f"stopped answering for {silent:.1f}s" + (
                    " (the process is stopped, e.g. by SIGSTOP)" if stopped else ""
                )
                self.record(component.role, component.label, detail, first_failure)
                return
