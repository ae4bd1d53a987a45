"""The lease a running meshlab holds on its routes in a cluster: who holds them, and a heartbeat.

A meshlab that runs an experiment in a cluster stamps every step it applies to its VirtualService
with ``meshlab.io/holder`` (``<host>/<pid>/<run id>``) and ``meshlab.io/lease-seconds``, and keeps
``meshlab.io/heartbeat`` (a UTC time) fresh: a daemon thread renews it every
``target.lease.renewEvery`` (default a third of the lease) by a merge patch that carries the
resourceVersion just read, so it never overwrites another holder. A clean end removes all three. Anyone who reads the VirtualService can then tell (:class:`Lease`):

* no holder: no meshlab is in charge of the routes (finished, rolled back by hand, or left at a
  step by ``onInconclusive: hold``);
* a holder whose heartbeat is younger than its lease: running;
* a holder whose heartbeat is older, or whose process is provably gone (same host, its pid no
  longer exists, or is ours): **dead since its last heartbeat**, i.e. interrupted (SIGKILL, OOM,
  node loss) with its routes still in force. ``meshlab start`` rolls such a run back first.

Before all that, the run takes the experiment's ``coordination.k8s.io`` Lease
(:mod:`meshlab.mesh.kube_runlease`), which the same heartbeat renews: that Lease keeps two runs
apart; the annotations here tell ``status`` and a restarted run where the routes stand.

Renewal failures are logged and retried at the next beat: a failed renewal never stops an
experiment (a Lease another run has taken over does: the run applies no further step). The
heartbeat uses its own client object, so it never waits behind a rollback.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from meshlab.errors import ConflictError, MeshError
from meshlab.manifests.meta import STEP_ANNOTATION
from meshlab.mesh.kube_adopt import (
    APPLIED_AT_ANNOTATION,
    EXPERIMENT_ANNOTATION,
    HEARTBEAT_ANNOTATION,
    HOLDER_ANNOTATION,
    LEASE_ANNOTATION,
    LEASE_ANNOTATIONS,
)
from meshlab.mesh.kube_client import KubeObjects

if TYPE_CHECKING:
    from meshlab.mesh.kube_runlease import RunLease

log = logging.getLogger(__name__)

__all__ = ["HEARTBEAT_ANNOTATION", "HOLDER_ANNOTATION", "LEASE_ANNOTATION", "Heartbeat", "Lease"]
DEFAULT_LEASE_SECONDS = 30.0


def timestamp(when: float) -> str:
    """An annotation time: RFC 3339 UTC with microseconds, ``Z``-suffixed."""
    return (
        datetime.fromtimestamp(when, tz=UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )


def parse_time(value: str | None) -> float | None:
    """Seconds since the epoch of an annotation time, or None if it is not one."""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


_OURS: set[str] = set()  # the holders this process created: alive for as long as it runs


def new_holder() -> str:
    """A new identity for this process: ``<host>/<pid>/<random run id>``.

    A restarted container may reuse its host name and pid, never the run id.
    """
    holder = f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"
    _OURS.add(holder)
    return holder


def holder_gone(holder: str) -> bool:
    """Whether ``holder`` (``<host>/<pid>/<run id>``) ran on this host and its process is gone.

    A holder on another host, or one of this process's own, is never provably gone; this process
    having the holder's pid is (a restarted container: same host name, same pid, another run).
    """
    parts = holder.split("/")
    if holder in _OURS or len(parts) < 2 or parts[0] != socket.gethostname():
        return False
    if not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True)
class Lease:
    """A holder's claim on an experiment's routes, as read from its VirtualService."""

    holder: str
    heartbeat: float | None  # None: the holder died before its first renewal was written
    seconds: float
    applied_at: float  # when the step in force was applied (a lower bound for the heartbeat)

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, str], applied_at: float) -> Lease | None:
        """The lease recorded in ``annotations``, or None when no meshlab holds the routes."""
        holder = annotations.get(HOLDER_ANNOTATION)
        if not holder:
            return None
        try:
            seconds = float(annotations.get(LEASE_ANNOTATION, DEFAULT_LEASE_SECONDS))
        except ValueError:
            seconds = DEFAULT_LEASE_SECONDS
        return cls(holder, parse_time(annotations.get(HEARTBEAT_ANNOTATION)), seconds, applied_at)

    @property
    def last_seen(self) -> float:
        """The last time the holder is known to have been alive."""
        return max(self.heartbeat or 0.0, self.applied_at)

    @property
    def host(self) -> str:
        return self.holder.split("/")[0]

    @property
    def pid(self) -> int | None:
        parts = self.holder.split("/")
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

    def provably_dead(self) -> bool:
        """The holder ran on this host and its process is gone (or this process has its pid)."""
        return holder_gone(self.holder)

    def expires_at(self) -> float:
        return self.last_seen + self.seconds

    def alive(self, now: float) -> bool:
        """Whether the holder must be presumed running at ``now``."""
        return not self.provably_dead() and now < self.expires_at()

    def describe(self, now: float) -> str:
        """``running (holder H, heartbeat 3 s ago)`` or ``DEAD since T (holder H, ...)``."""
        age = max(0.0, now - self.last_seen)
        if self.alive(now):
            return f"running (holder {self.holder}, heartbeat {age:.0f} s ago)"
        why = "its process is gone" if self.provably_dead() else f"lease of {self.seconds:g} s"
        return (
            f"DEAD since {timestamp(self.last_seen)} (holder {self.holder}, no heartbeat for "
            f"{age:.0f} s, {why})"
        )


class Heartbeat:
    """Renews a run's claims every ``every`` seconds (default ``seconds / 3``) until stopped.

    The run's :class:`~meshlab.mesh.kube_runlease.RunLease` (``run_lease``) from the start; the
    route object's lease annotations once ``routes`` is set (after the first step is applied). The
    route object is the one carrying meshlab's routes: a VirtualService or an HTTPRoute (``kind``).
    """

    def __init__(
        self,
        objects: KubeObjects,
        name: str,
        holder: str,
        seconds: float,
        *,
        clock: Callable[[], float] = time.time,
        kind: str = "VirtualService",
        every: float | None = None,
        run_lease: RunLease | None = None,
        routes: bool = True,
    ) -> None:
        self.kind = kind
        self.objects = objects
        self.name = name
        self.holder = holder
        self.seconds = seconds
        self.every = every if every is not None else seconds / 3
        self.clock = clock
        self.run_lease = run_lease
        self.routes = routes
        self.renewals = 0  # of the route object's heartbeat
        self.lost = False  # someone else holds the routes now (or a person rolled them back)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="meshlab-lease", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.objects.timeout + 1.0)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            if not self.beat():
                return

    def beat(self) -> bool:
        """One round of renewals (failures logged, retried next beat); False: stop beating.

        The run's Lease is renewed for as long as the run lives, even after it lost its routes
        (it is still rolling back or closing); once the Lease itself is lost, nothing is renewed.
        """
        run_lost = False
        if self.run_lease is not None:
            try:
                self.run_lease.renew()
            except MeshError as exc:
                log.warning("%s not renewed: %s", self.run_lease.where, exc)
            run_lost = self.run_lease.lost is not None
        if self.routes and not self.lost:
            try:
                self.renew()
            except MeshError as exc:
                log.warning("lease on %s %s not renewed: %s", self.kind, self.name, exc)
        if run_lost:
            return False  # another run holds the experiment: nothing of ours is worth renewing
        return self.run_lease is not None or not self.lost

    def renew(self) -> bool:
        """Write a fresh heartbeat if we still hold the routes; False when we do not."""
        current = self.objects.get(self.kind, self.name)
        if current is None:
            return False
        metadata = current.get("metadata") or {}
        held_by = (metadata.get("annotations") or {}).get(HOLDER_ANNOTATION)
        if held_by != self.holder:
            if held_by is not None or not self.lost:
                log.warning(
                    "%s %s/%s is no longer held by this meshlab (holder: %s); "
                    "stopped renewing its lease",
                    self.kind,
                    self.objects.namespace,
                    self.name,
                    held_by or "none",
                )
            self.lost = True
            return False
        patch = {
            "metadata": {
                "resourceVersion": metadata.get("resourceVersion"),
                "annotations": {HEARTBEAT_ANNOTATION: timestamp(self.clock())},
            }
        }
        try:
            self.objects.merge_patch(self.kind, self.name, patch)
        except ConflictError:
            return False  # changed meanwhile (a step was applied): the next beat renews
        self.renewals += 1
        return True


def release(objects: KubeObjects, name: str, holder: str, kind: str = "VirtualService") -> bool:
    """Remove the lease annotations if ``holder`` still holds them; True when it did."""
    for _ in range(3):
        current = objects.get(kind, name)
        metadata = (current or {}).get("metadata") or {}
        if (metadata.get("annotations") or {}).get(HOLDER_ANNOTATION) != holder:
            return False
        patch = {
            "metadata": {
                "resourceVersion": metadata.get("resourceVersion"),
                "annotations": dict.fromkeys(LEASE_ANNOTATIONS),
            }
        }
        try:
            objects.merge_patch(kind, name, patch)
            return True
        except ConflictError:
            continue
    return False


def check_claim(
    holder: str | None, applied: bool, current: dict[str, Any] | None, step: str, where: str
) -> None:
    """A holding run that lost its routes stops: to another run, or to a manual rollback.

    ``holder`` is this run's identity (None: it holds nothing), ``applied`` whether it applied a
    step already, ``current`` the route object as read now. Its own rollback still goes ahead when
    nobody else holds the routes (re-applying rollback routes a person already applied changes
    nothing), never over another run's routes.
    """
    if holder is None or not applied or current is None:
        return
    held_by = ((current.get("metadata") or {}).get("annotations") or {}).get(HOLDER_ANNOTATION)
    if held_by == holder or (held_by is None and step == "rollback"):
        return
    why = (
        f"another meshlab holds them now ({held_by}); this run leaves them to it"
        if held_by
        else "its lease was removed (e.g. by 'meshlab rollback'); this run stops"
    )
    raise ConflictError(f"{where} is no longer held by this meshlab: {why}")


def step_stamp(
    experiment: str, step: str, now: float, holder: str | None, lease_seconds: float
) -> dict[str, str]:
    """The annotations a step's route object carries: the step, when, and the holder's lease."""
    when = timestamp(now)
    stamp = {EXPERIMENT_ANNOTATION: experiment, STEP_ANNOTATION: step, APPLIED_AT_ANNOTATION: when}
    if holder is not None:
        stamp[HOLDER_ANNOTATION] = holder
        stamp[HEARTBEAT_ANNOTATION] = when
        stamp[LEASE_ANNOTATION] = f"{lease_seconds:g}"
    return stamp
