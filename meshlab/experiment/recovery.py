"""Crash-only runs in a cluster: find an interrupted run and roll it back (or resume it) first.

A meshlab killed mid-step (SIGKILL, OOM, a lost node) cannot roll back; its routes stay in the
cluster with its lease (:mod:`meshlab.mesh.kube_lease`). Three things here make that safe:

* :func:`recover_before_start`, called by ``start`` before anything else: if the experiment's
  VirtualService is held by a meshlab whose lease has run out (or whose process is provably gone),
  the run was interrupted: its routes are rolled back and read back before the new run starts, or,
  with ``--resume``, the new run carries on from the step in force (no dip to the baseline). A
  holder that is still alive is waited for until its lease would run out (a restarted Job pod cannot
  tell a dead predecessor from a live one sooner); if it renews, the start is refused.
* :func:`cluster_rollback` (``meshlab rollback``): roll back, then read the routes back; success is
  claimed only when the cluster shows baseline-only routes (or no meshlab route at all).
* :func:`cluster_view` (``meshlab status``): the step in force and "running" vs "DEAD since T".

:func:`resolve_target` decides where ``status`` and ``rollback`` act: flags, then the target the
state file recorded (a run started with ``--target kubernetes`` is found in its cluster even when
the spec says ``local``), then the spec.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshlab.errors import ConfigError, MeshError
from meshlab.experiment.state import ExperimentState
from meshlab.manifests import Step, plan
from meshlab.spec import Experiment

if TYPE_CHECKING:
    from meshlab.mesh.kube_lease import Lease
    from meshlab.mesh.kubernetes import KubernetesMesh

log = logging.getLogger(__name__)
END_STEPS = ("promoted", "rollback")


@dataclass(frozen=True)
class Where:
    """Where a command acts: the target kind and, for a cluster, how to reach it."""

    kind: str  # "local" | "kubernetes"
    kubeconfig: str | None = None
    context: str | None = None


def resolve_target(
    experiment: Experiment,
    state: ExperimentState | None,
    *,
    target: str | None = None,
    kubeconfig: str | None = None,
    context: str | None = None,
) -> Where:
    """Flags first, then what the state file recorded, then the spec."""
    kind = target or (state.target if state is not None else None) or experiment.spec.target.kind
    if kind not in ("local", "kubernetes"):
        raise ConfigError(f"--target: {kind!r} is not 'local' or 'kubernetes'")
    recorded = state.mesh if state is not None and state.target == "kubernetes" else {}
    spec = experiment.spec.target
    return Where(
        kind,
        kubeconfig or recorded.get("kubeconfig") or spec.kubeconfig,
        context or recorded.get("context") or spec.context,
    )


def with_target(experiment: Experiment, kind: str) -> Experiment:
    """``experiment`` with ``spec.target.kind`` replaced (what ``--target`` does)."""
    if kind not in ("local", "kubernetes"):
        raise ConfigError(f"--target: {kind!r} is not 'local' or 'kubernetes'")
    target = experiment.spec.target.model_copy(update={"kind": kind})
    spec = experiment.spec.model_copy(update={"target": target})
    return experiment.model_copy(update={"spec": spec})


def _mesh(experiment: Experiment, where: Where, *, dry_run: bool = False) -> KubernetesMesh:
    from meshlab.mesh.kubernetes import KubernetesMesh  # the kubernetes client: only when used

    return KubernetesMesh.from_spec(
        with_target(experiment, "kubernetes"),
        kubeconfig=where.kubeconfig,
        context=where.context,
        dry_run=dry_run,
    )


def _label(experiment: Experiment, step_name: str) -> str:
    """``canary 50% (step 2)`` for a step name read back from the cluster."""
    for step in plan(experiment):
        if step.name == step_name:
            return f"{step.label} (step {step.name})"
    return f"step {step_name}"


def recover_before_start(
    experiment: Experiment,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    resume: bool = False,
    dry_run: bool = False,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Experiment:
    """Before a start: roll back (or resume) this experiment if a run of it died in the cluster.

    Returns the experiment to run: ``experiment`` itself, or with ``resume`` a copy whose plan
    begins at the step in force. Raises :class:`ConfigError` when a live meshlab still holds it.
    A dry run only reads: it says what it would roll back and changes nothing.
    """
    if experiment.spec.target.kind != "kubernetes":
        return experiment
    from meshlab.mesh.kube_holding import wait_for_lease  # the Kubernetes client loads lazily

    mesh = _mesh(experiment, Where("kubernetes", kubeconfig, context), dry_run=dry_run)
    try:
        if not dry_run:  # a live run's Lease refuses this start before it creates anything
            wait_for_lease(
                mesh.objects,
                experiment=experiment.metadata.name,
                lease_name=mesh.resource,
                seconds=mesh.lease_seconds,
                clock=clock,
                sleep=sleep,
            )
        return _recover(mesh, experiment, resume=resume, clock=clock, sleep=sleep)
    finally:
        mesh.close()


def _recover(
    mesh: KubernetesMesh,
    experiment: Experiment,
    *,
    resume: bool,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Experiment:
    name = f"{experiment.metadata.namespace}/{experiment.metadata.name}"
    routing, lease = mesh.status(), mesh.lease()
    if routing is None or lease is None:
        return experiment  # no meshlab holds the routes: nothing was interrupted
    lease = _wait_for_expiry(mesh, lease, name, clock=clock, sleep=sleep)
    if lease is None:
        return experiment  # released meanwhile: that run ended cleanly
    routing = mesh.status()
    if routing is None or routing.step in END_STEPS:
        log.warning(
            "%s: the previous run (%s) ended at %s; nothing to roll back",
            name,
            lease.describe(clock()),
            routing.step if routing else "no route",
        )
        return experiment
    in_force = _label(experiment, routing.step)
    if resume:
        resumed = resumable(experiment, routing.step)
        if resumed is not None:
            log.warning(
                "%s: the previous run was interrupted at %s; %s; resuming there (the new run "
                "numbers its steps from 1; earlier evidence is not carried over)",
                name,
                in_force,
                lease.describe(clock()),
            )
            return resumed
        log.warning(
            "%s: cannot resume at %s (it needs evidence only the dead run had); rolling back first",
            name,
            in_force,
        )
    log.warning(
        "%s: the previous run was interrupted at %s; %s; rolling it back before starting",
        name,
        in_force,
        lease.describe(clock()),
    )
    if mesh.dry_run:
        log.warning("%s: dry run: the interrupted run's routes stay as they are", name)
        return experiment
    mesh.in_force = in_force
    mesh.rollback()
    mesh.release(lease.holder)  # the dead run's claim
    after = mesh.status()
    if after is not None and after.step != "rollback":
        raise MeshError(
            f"{name}: rolled back the interrupted run, but the cluster reads back step "
            f"{after.step}; another writer is changing it — stop it, then re-run"
        )
    log.warning("%s: interrupted run rolled back (read back from the cluster)", name)
    return experiment


def _wait_for_expiry(
    mesh: KubernetesMesh,
    lease: Lease,
    name: str,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Lease | None:
    """The lease once its holder is known dead; None if it was released; refuses a live holder."""
    if lease.alive(clock()):
        log.warning(
            "%s is held by %s; waiting up to %.0f s for its lease to run out",
            name,
            lease.describe(clock()),
            lease.expires_at() - clock(),
        )
    while lease.alive(clock()):
        sleep(max(0.05, min(1.0, lease.expires_at() - clock())))
        fresh = mesh.lease()
        if fresh is None:
            return None
        if fresh.holder != lease.holder or fresh.last_seen > lease.last_seen:
            raise ConfigError(
                f"{name} is already running in the cluster: {fresh.describe(clock())}; see "
                "'meshlab status', or stop that run first"
            )
    return lease


def resumable(experiment: Experiment, step_name: str) -> Experiment | None:
    """The experiment with its plan starting at ``step_name``, or None if it cannot resume there.

    Step 1 of any strategy resumes as a fresh run without a rollback first. A later canary step
    resumes when the baseline still serves beside the candidate (under 100%): the steps before it
    were promoted by the dead run, and this one gathers its evidence anew. A 100% soak, a blue/green
    switch or the canary phase of ``shadow then canary`` needs a promote verdict only the dead run
    had, so those roll back first.
    """
    steps: list[Step] = plan(experiment)
    found = next((s for s in steps if s.name == step_name), None)
    if found is None:
        return None
    if found.number == 1:
        return experiment
    spec = experiment.spec
    if spec.strategy != "canary" or spec.canary is None or found.candidate_weight >= 100:
        return None
    canary = spec.canary.resumed_at(found.number)
    return experiment.model_copy(update={"spec": spec.model_copy(update={"canary": canary})})


@dataclass(frozen=True)
class ClusterView:
    """What ``status`` reads back from the cluster."""

    step: str  # the step in force, or "absent"
    holder: str  # "running (...)", "DEAD since T (...)" or "none (no meshlab holds the routes)"
    alive: bool
    # the experiment's coordination.k8s.io Lease, taken before step 1: "holder H since T (...)",
    # "none", or why it could not be read
    run_lease: str = "none"
    lease_held: bool = False  # a run holds the Lease (it may not have stamped the routes yet)


def cluster_view(experiment: Experiment, where: Where) -> ClusterView:
    """The step in force, the meshlab holding it and the experiment's Lease, read from the cluster.

    The Lease shows a run that is starting (pre-flight, load warm-up) before its first step stamps
    the route object; a status reader not allowed to read Leases still gets the routes.
    """
    from meshlab.mesh.kube_runlease import read_lease

    mesh = _mesh(experiment, where)
    held, run_lease = False, "none"
    try:
        routing, lease = mesh.status(), mesh.lease()
        try:
            record = read_lease(mesh.objects, mesh.resource)
        except MeshError as exc:
            record, run_lease = None, f"not readable ({exc})"
    finally:
        mesh.close()
    now = time.time()
    if record is not None and record.holder:
        held, run_lease = True, record.describe(now)
    step = routing.step if routing else "absent"
    if lease is None:
        return ClusterView(step, "none", False, run_lease, held)
    return ClusterView(step, lease.describe(now), lease.alive(now), run_lease, held)


def cluster_rollback(experiment: Experiment, where: Where) -> str:
    """Roll the experiment's routes back in the cluster and confirm it; the line to print."""
    mesh = _mesh(experiment, where)
    name = f"{mesh.route_kind} {experiment.metadata.namespace}/{mesh.route_name}"
    try:
        before = mesh.status()
        if before is None:
            return (
                f"{experiment.metadata.name}: {name} carries no meshlab route for "
                "this experiment (read back from the cluster): nothing routes to the candidate"
            )
        lease = mesh.lease()
        if lease is not None and lease.alive(time.time()):
            log.warning(
                "%s is still held by %s: it may apply its next step; stop it as well",
                name,
                lease.describe(time.time()),
            )
        mesh.in_force = _label(experiment, before.step)
        mesh.rollback()
        if lease is not None and not lease.alive(time.time()):
            mesh.release(lease.holder)  # a dead run's claim
        after = mesh.status()
    finally:
        mesh.close()
    if after is not None and after.step != "rollback":
        raise MeshError(
            f"rollback not confirmed: {name} reads back step {after.step}; "
            "another writer changed it — stop it and run 'meshlab rollback' again"
        )
    shown = "meshlab's routes removed" if after is None else "step rollback, baseline only"
    return (
        f"{experiment.metadata.name}: routes rolled back to the baseline in the cluster "
        f"(was {_label(experiment, before.step)}; read back from {name}: {shown})"
    )
