"""What a run that drives an experiment in a cluster holds, and how it takes and lets go of it.

A holding :class:`~meshlab.mesh.kubernetes.KubernetesMesh` (``meshlab start``) owns three things:
its identity (``holder``), the experiment's ``coordination.k8s.io`` Lease
(:class:`~meshlab.mesh.kube_runlease.RunLease`, taken by :func:`take_hold` before anything is
applied) and the :class:`~meshlab.mesh.kube_lease.Heartbeat` that renews both that Lease and,
once a step is applied, the route object's lease annotations. :func:`check_not_lost` stops a run
whose Lease another run took over; :func:`let_go` gives everything back on every exit the run
lives through. The backend keeps the routing; this module keeps who may write it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from meshlab.errors import ConflictError, MeshError
from meshlab.mesh.kube_adopt import APPLIED_AT_ANNOTATION, EXPERIMENT_ANNOTATION
from meshlab.mesh.kube_client import KubeObjects
from meshlab.mesh.kube_lease import Heartbeat, Lease, parse_time, release
from meshlab.mesh.kube_runlease import RunLease

log = logging.getLogger(__name__)


def take_hold(
    objects: KubeObjects,
    *,
    experiment: str,
    lease_name: str,
    route: tuple[str, str],
    holder: str,
    seconds: float,
    every: float | None,
    clock: Callable[[], float] = time.time,
) -> tuple[RunLease, Heartbeat]:
    """Take the experiment's Lease for ``holder`` and start the heartbeat (``route``: kind, name).

    Raises :class:`~meshlab.mesh.kube_runlease.LeaseHeldError` (exit 2) when another run holds
    it. The Lease and the heartbeat use a client object of their own, so a renewal never waits
    behind a rollback's retries.
    """
    renewer = KubeObjects(
        objects.api_client,
        objects.namespace,
        field_manager=objects.field_manager,
        timeout=objects.timeout,
    )
    run_lease = RunLease(renewer, lease_name, holder, seconds, experiment=experiment, clock=clock)
    run_lease.acquire()
    kind, name = route
    heartbeat = Heartbeat(
        renewer, name, holder, seconds, kind=kind, every=every, run_lease=run_lease, routes=False
    )
    heartbeat.start()
    return run_lease, heartbeat


def wait_for_lease(
    objects: KubeObjects,
    *,
    experiment: str,
    lease_name: str,
    seconds: float,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Before a start creates anything: wait while a live run holds the experiment's Lease.

    Read only (:meth:`~meshlab.mesh.kube_runlease.RunLease.wait_until_free`): raises
    :class:`~meshlab.mesh.kube_runlease.LeaseHeldError` (exit 2) when its holder renews it, so a
    refused start leaves no run directory and no state behind; :func:`take_hold` still decides.
    """
    waiting = RunLease(
        objects, lease_name, "", seconds, experiment=experiment, clock=clock, sleep=sleep
    )
    waiting.wait_until_free()


def check_not_lost(run_lease: RunLease | None, step: str) -> None:
    """A run whose Lease was taken over applies no further step (its own rollback aside)."""
    if run_lease is None or run_lease.lost is None or step == "rollback":
        return
    raise ConflictError(
        f"{run_lease.where} is held by another meshlab now ({run_lease.lost}); this run applies "
        "no further step and leaves the routes to it"
    )


def route_lease(current: dict[str, Any] | None, experiment: str) -> Lease | None:
    """The lease recorded on the route object ``current`` for ``experiment``, if a run holds it."""
    annotations = ((current or {}).get("metadata") or {}).get("annotations") or {}
    if annotations.get(EXPERIMENT_ANNOTATION) != experiment:
        return None
    applied = parse_time(annotations.get(APPLIED_AT_ANNOTATION)) or 0.0
    return Lease.from_annotations(annotations, applied)


def let_go(
    objects: KubeObjects,
    *,
    holder: str | None,
    heartbeat: Heartbeat | None,
    run_lease: RunLease | None,
    route: tuple[str, str],
    where: str,
) -> None:
    """Stop renewing, then remove the route object's lease and delete the run's Lease if ours.

    Failures are logged, never raised: whatever is left expires by itself.
    """
    if heartbeat is not None:
        heartbeat.stop()
    kind, name = route
    try:
        if holder is not None and not objects.dry_run:
            release(objects, name, holder, kind)
    except MeshError as exc:
        log.warning("lease on %s not released (it expires by itself): %s", where, exc)
    if run_lease is None:
        return
    try:
        run_lease.release()
    except MeshError as exc:
        log.warning("%s not released (it expires by itself): %s", run_lease.where, exc)
