"""The run's Lease: at most one meshlab drives an experiment in a cluster, from before step 1.

A run that will drive an experiment (``KubernetesMesh.hold``) first takes the
``coordination.k8s.io/v1`` Lease ``meshlab-<experiment>`` in the experiment's namespace, before it
applies, starts or checks anything, with the semantics Kubernetes' own leader election gives the
Lease: ``holderIdentity`` (``<host>/<pid>/<run id>``, :func:`~meshlab.mesh.kube_lease.new_holder`),
``acquireTime``, ``renewTime``, ``leaseDurationSeconds`` and ``leaseTransitions``. Every write is
optimistic: a POST that fails with 409 (AlreadyExists) or a PUT whose resourceVersion is stale
(409 Conflict) means another run got there first, and this one stops with exit 2 and one line
naming the holder and since when (:class:`LeaseHeldError`).

* No Lease: create it. Two starts at the same moment both POST; the server lets exactly one win.
* A Lease of a live holder: wait (at most until it would expire) for either its next renewal (it is
  alive: refused) or its expiry (taken over). A restarted Job pod cannot tell a dead predecessor
  from a live one sooner, across nodes; on the same host a holder whose process is gone is dead at
  once.
* A Lease whose holder stopped renewing (``renewTime + leaseDurationSeconds`` passed; a SIGKILL, an
  OOM, a lost node) or whose process is provably gone: taken over by a PUT carrying the
  resourceVersion read, ``leaseTransitions`` + 1, and the note ``meshlab.io/took-over`` (who, last
  renewal, why), which is also logged.

``acquireTime``/``renewTime`` are ``metav1.MicroTime`` (RFC 3339 UTC, six fractional digits). The heartbeat (:class:`~meshlab.mesh.kube_lease.Heartbeat`) renews it every ``renewEvery`` by PUT
with the resourceVersion of the last write; a 409 is re-read, and a Lease held by someone else (or
deleted) is *lost*: the run applies no further step. The run deletes it (with its resourceVersion
as a precondition, so never another holder's) on every exit it lives through; after a SIGKILL it
expires. Expiry compares the holder's ``renewTime`` with this machine's clock, as the route
object's lease does; clocks skewed by more than the duration can make a live holder look dead,
which optimistic concurrency turns into a lost lease for it at its next renewal, never into two
writers of one write.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meshlab.errors import ConfigError, ConflictError, MeshError
from meshlab.mesh.kube_adopt import EXPERIMENT_ANNOTATION
from meshlab.mesh.kube_client import TRANSIENT, KubeObjects, KubeTimeoutError
from meshlab.mesh.kube_lease import holder_gone, parse_time, timestamp

log = logging.getLogger(__name__)

KIND, API_VERSION = "Lease", "coordination.k8s.io/v1"
TOOK_OVER_ANNOTATION = "meshlab.io/took-over"


class LeaseHeldError(ConfigError):
    """Another meshlab holds the experiment's Lease: this start is refused (exit 2)."""


@dataclass(frozen=True)
class LeaseRecord:
    """A Lease as read from the cluster."""

    holder: str  # "" when nobody holds it
    acquired: float | None
    renewed: float | None
    duration: float
    transitions: int
    version: str

    @classmethod
    def of(cls, obj: dict[str, Any]) -> LeaseRecord:
        spec = obj.get("spec") or {}
        seconds = spec.get("leaseDurationSeconds")
        return cls(
            str(spec.get("holderIdentity") or ""),
            parse_time(spec.get("acquireTime")),
            parse_time(spec.get("renewTime")),
            float(seconds) if isinstance(seconds, int | float) and seconds > 0 else 0.0,
            int(spec.get("leaseTransitions") or 0),
            str((obj.get("metadata") or {}).get("resourceVersion") or ""),
        )

    def expires_at(self) -> float:
        return (self.renewed or self.acquired or 0.0) + self.duration

    def free(self, now: float) -> str | None:
        """Why the Lease may be taken (None: its holder must be presumed alive)."""
        if not self.holder:
            return "nobody held it"
        if holder_gone(self.holder):
            return "its process is gone"
        if now >= self.expires_at():
            return f"no renewal for {now - (self.renewed or self.acquired or 0.0):.0f} s"
        return None

    def describe(self, now: float) -> str:
        """``holder H since T (last renewed 3 s ago, lease 30 s)``."""
        since = timestamp(self.acquired) if self.acquired is not None else "an unknown time"
        renewed = (
            f"last renewed {max(0.0, now - self.renewed):.0f} s ago"
            if self.renewed is not None
            else "never renewed"
        )
        return f"holder {self.holder} since {since} ({renewed}, lease {self.duration:g} s)"


def read_lease(objects: KubeObjects, name: str) -> LeaseRecord | None:
    """The experiment's Lease as stored (``meshlab status``), or None when nobody holds one."""
    found = objects.get(KIND, name)
    return None if found is None else LeaseRecord.of(found)


class RunLease:
    """This run's claim on the experiment: :meth:`acquire`, :meth:`renew`, :meth:`release`."""

    def __init__(
        self,
        objects: KubeObjects,
        name: str,
        holder: str,
        seconds: float,
        *,
        experiment: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.objects = objects
        self.name = name
        self.holder = holder
        self.seconds = max(1, math.ceil(seconds))  # leaseDurationSeconds is whole seconds
        self.experiment = experiment
        self.clock = clock
        self.sleep = sleep
        self.took_over: str | None = None  # the note, when this run took a dead holder's Lease
        self.lost: str | None = None  # who holds it now ("nobody": deleted) once it was lost
        self._stored: dict[str, Any] | None = None  # our last write, as the server answered it

    @property
    def where(self) -> str:
        return f"Lease {self.objects.namespace}/{self.name}"

    def acquire(self) -> None:
        """Take the Lease, or raise :class:`LeaseHeldError` naming the run that holds it."""
        seen: LeaseRecord | None = None
        while True:
            current = self.objects.get(KIND, self.name)
            now = self.clock()
            if current is None:
                self._create(now)
                return
            record = LeaseRecord.of(current)
            if record.holder == self.holder:  # our own write, answered too late
                self._stored = current
                return
            why = record.free(now)
            if why is not None:
                self._take_over(current, record, why, now)
                return
            seen = self._wait_on(record, seen, now)

    def wait_until_free(self) -> None:
        """Read only: return once nobody else holds the Lease (or its holder is dead), or raise
        :class:`LeaseHeldError` as :meth:`acquire` would. A start calls this before its run
        directory exists, so a refused start leaves nothing behind; :meth:`acquire` still decides
        (two starts in the same instant both pass here, and one of them is refused there)."""
        seen: LeaseRecord | None = None
        while True:
            record = read_lease(self.objects, self.name)
            now = self.clock()
            if record is None or record.holder == self.holder or record.free(now) is not None:
                return
            seen = self._wait_on(record, seen, now)

    def _wait_on(self, record: LeaseRecord, seen: LeaseRecord | None, now: float) -> LeaseRecord:
        """Wait a little on a live holder; refuse once it has renewed since first ``seen``."""
        if seen is None:
            seen = record
            log.warning(
                "%s is held: %s; waiting up to %.0f s for it to renew or run out",
                self.where,
                record.describe(now),
                record.expires_at() - now,
            )
        elif (record.holder, record.renewed) != (seen.holder, seen.renewed):
            raise self._held(record, "it renewed it meanwhile, so it is alive")
        self.sleep(max(0.05, min(1.0, record.expires_at() - now)))
        return seen

    def _body(self, now: float, base: dict[str, Any] | None, note: str | None) -> dict[str, Any]:
        old = LeaseRecord.of(base) if base is not None else None
        annotations = {EXPERIMENT_ANNOTATION: self.experiment}
        if note is not None:
            annotations[TOOK_OVER_ANNOTATION] = note
        metadata: dict[str, Any] = {
            "name": self.name,
            "namespace": self.objects.namespace,
            "labels": {"app.kubernetes.io/managed-by": "meshlab"},
            "annotations": annotations,
        }
        if base is not None:
            metadata["resourceVersion"] = (base.get("metadata") or {}).get("resourceVersion")
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.holder,
                "leaseDurationSeconds": self.seconds,
                "acquireTime": timestamp(now),
                "renewTime": timestamp(now),
                "leaseTransitions": (old.transitions + 1) if old is not None else 0,
            },
        }

    def _create(self, now: float) -> None:
        try:
            self._stored = self.objects.create(self._body(now, None, None))
        except ConflictError:
            raise self._held(self._reread(), "it created the Lease first") from None
        except KubeTimeoutError:
            self._settle_timeout()
            return
        log.info("%s taken by this meshlab (%s)", self.where, self.holder)

    def _take_over(
        self, current: dict[str, Any], record: LeaseRecord, why: str, now: float
    ) -> None:
        note = (
            f"taken over from {record.holder or 'nobody'} at {timestamp(now)}: {why}"
            if record.holder
            else None
        )
        try:
            self._stored = self.objects.replace(self._body(now, current, note))
        except ConflictError:
            raise self._held(self._reread(), "it took the Lease over first") from None
        except KubeTimeoutError:
            self._settle_timeout()
        if note is not None:
            self.took_over = note
            log.warning("%s %s (%s); this run holds it now", self.where, note, record.describe(now))

    def _settle_timeout(self) -> None:
        """A write that timed out may have landed: ours if the Lease now names us."""
        current = self.objects.get(KIND, self.name)
        if current is not None and LeaseRecord.of(current).holder == self.holder:
            self._stored = current
            return
        raise MeshError(
            f"{self.where}: the API server did not answer taking the run's Lease; nothing was "
            "applied — re-run the start"
        )

    def _reread(self) -> LeaseRecord:
        record = read_lease(self.objects, self.name)
        if record is None:  # taken and let go again within a request: name nobody in particular
            return LeaseRecord("another meshlab", None, None, 0.0, 0, "")
        return record

    def _held(self, record: LeaseRecord, why: str) -> LeaseHeldError:
        return LeaseHeldError(
            f"{self.experiment} is already being run by another meshlab: {self.where} "
            f"{record.describe(self.clock())}; {why}. See 'meshlab status', or stop that run first"
        )

    def renew(self) -> bool:
        """Write a fresh ``renewTime`` if this run still holds the Lease; False once it is lost."""
        if self._stored is None or self.lost is not None:
            return False
        body = copy.deepcopy(self._stored)
        body["spec"]["renewTime"] = timestamp(self.clock())
        body["metadata"].pop("managedFields", None)
        try:
            self._stored = self.objects.replace(body)
            return True
        except TRANSIENT:
            raise  # the heartbeat logs it and tries again at the next beat
        except MeshError:
            pass  # 409: written meanwhile (by us, answered late, or by a run that took it
            # over); 404: deleted. Either way, read who holds it now.
        current = self.objects.get(KIND, self.name)
        holder = LeaseRecord.of(current).holder if current is not None else ""
        if holder == self.holder:
            assert current is not None
            self._stored = current  # the next beat renews from this version
            return False
        self.lost = holder or "nobody (the Lease was deleted)"
        log.warning(
            "%s is no longer held by this meshlab (holder now: %s); it applies no further step",
            self.where,
            self.lost,
        )
        return False

    def release(self) -> bool:
        """Delete the Lease if this run still holds it (its resourceVersion as a precondition)."""
        for _ in range(3):
            current = self.objects.get(KIND, self.name)
            if current is None or LeaseRecord.of(current).holder != self.holder:
                return False
            version = (current.get("metadata") or {}).get("resourceVersion")
            try:
                self.objects.delete(KIND, self.name, resource_version=version)
            except ConflictError:
                continue  # renewed meanwhile by our own heartbeat's last beat: read again
            self._stored = None
            return True
        return False


def delete_if_dead(
    objects: KubeObjects, name: str, *, clock: Callable[[], float] = time.time
) -> bool:
    """Delete the experiment's Lease when its holder is dead or gone (``cleanup``); a live
    holder's Lease is left (logged), as is one renewed meanwhile (the delete's precondition)."""
    record = read_lease(objects, name)
    if record is None:
        return False
    why = record.free(clock())
    where = f"Lease {objects.namespace}/{name}"
    if why is None:
        log.warning("%s left: %s is alive", where, record.describe(clock()))
        return False
    try:
        return objects.delete(KIND, name, resource_version=record.version or None)
    except ConflictError:
        log.warning("%s left: renewed while it was being deleted", where)
        return False
