"""The Kubernetes mesh backend: apply a step's plan, rendered in the experiment's routing API.

``KubernetesMesh.from_spec(experiment, kubeconfig=..., context=..., dry_run=...)`` builds it from
``spec.target``. A step's :class:`~meshlab.manifests.routing.RoutingPlan` is rendered by the
renderer ``spec.target.routing`` names in :mod:`meshlab.registry`: Istio's DestinationRule and
VirtualService, or the Gateway API's backend Services and HTTPRoute. The renderer's last object is
the *route object* (it carries the routes and meshlab's state); the others are what it needs first.
Backend Services are completed from the parent Service in the cluster (its selector, its target
port). Objects meshlab owns (``meshlab-<experiment>``, ``meshlab-<service>-<subset>``) are written
by server-side apply with field manager ``target.fieldManager`` and ``force`` (meshlab is their
declared owner, and a rollback must win over a stray ``kubectl edit``); an object of that name not
labelled ``app.kubernetes.io/managed-by: meshlab`` is never overwritten. With
``target.adoptVirtualService`` (Istio) or ``target.adoptHTTPRoute`` (Gateway API) meshlab edits a
user's route object by read-modify-write with the resourceVersion (retrying a bounded number of
409s), changing only its own named routes, and restores it exactly on rollback/cleanup.

State lives in the cluster, so ``status`` and ``rollback`` work from any machine: the route object
carries ``meshlab.io/experiment``, ``meshlab.io/step`` and ``meshlab.io/applied-at`` annotations.
The run that drives the experiment (``hold``, :mod:`meshlab.mesh.kube_holding`) first takes the
experiment's ``coordination.k8s.io`` Lease, so no other run can start it, and then stamps the lease
of :mod:`meshlab.mesh.kube_lease` on every step.

A step is applied all-or-nothing (:func:`~meshlab.mesh.kube_objects.write_all_or_nothing`): the
objects the routes need first, then the route object; if a write fails, what was written is put
back. A write that timed out is checked, not retried: if the server did apply it, the step is in
force; 5xx and refused connections are retried for ``target.stepRetry``. A rollback retries every
transient failure until ``target.rollbackDeadline``. With ``dry_run`` every write is a server-side
dry run (``dryRun=All``): validated and admitted by the real server, persisted nowhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from meshlab.errors import MeshError
from meshlab.manifests import Manifest, RoutingPlan, resource_name, step_plan
from meshlab.manifests import rollback as rollback_step
from meshlab.mesh.base import Fault, MeshRun, RoutingState, RunContext
from meshlab.mesh.kube_adopt import route_field
from meshlab.mesh.kube_adoption import adopt_routes, adopted_name, restore_adopted
from meshlab.mesh.kube_client import TRANSIENT, KubeObjects, KubeUnavailableError, load_api_client
from meshlab.mesh.kube_holding import check_not_lost, let_go, route_lease, take_hold
from meshlab.mesh.kube_lease import Heartbeat, Lease, check_claim, new_holder, release, step_stamp
from meshlab.mesh.kube_objects import (
    annotated,
    backend_services,
    check_step,
    not_as_rendered,
    owned_routes,
    parent_name,
    read_previous,
    refuse_foreign,
    routing_state,
    step_label,
    stepped,
    write_all_or_nothing,
)
from meshlab.mesh.kube_runlease import RunLease, delete_if_dead
from meshlab.registry import routing_renderer
from meshlab.spec import Experiment
from meshlab.spec.target import LEASE_SECONDS, ROLLBACK_DEADLINE_SECONDS, STEP_RETRY_SECONDS

log = logging.getLogger(__name__)


class KubernetesMesh:
    """A Kubernetes service mesh (Istio or Gateway API routing) behind ``MeshBackend``."""

    name = "kubernetes"

    def __init__(
        self,
        experiment: Experiment,
        objects: KubeObjects,
        *,
        adopt_virtual_service: str | None = None,
        adopt_http_route: str | None = None,
        conflict_retries: int = 5,
        clock: Callable[[], float] = time.time,
        lease_seconds: float = LEASE_SECONDS,
        renew_every: float | None = None,
        step_retry_seconds: float = STEP_RETRY_SECONDS,
        rollback_deadline: float = ROLLBACK_DEADLINE_SECONDS,
    ) -> None:
        self.experiment = experiment
        self.objects = objects
        self.routing = experiment.spec.target.routing
        self.render = routing_renderer(self.routing)
        # What every step writes, learnt from the rollback step (ConfigError: the spec cannot be
        # rendered in this routing API, before anything touches the cluster).
        self.baseline_objects = self.render(step_plan(experiment, rollback_step()))
        self.route_kind = str(self.baseline_objects[-1]["kind"])
        objects.learn(self.baseline_objects)
        self.adopt_route = adopted_name(
            self.routing,
            self.route_kind,
            {"VirtualService": adopt_virtual_service, "HTTPRoute": adopt_http_route},
        )
        self.conflict_retries = conflict_retries
        self.clock = clock
        self.namespace = experiment.metadata.namespace
        self.resource = resource_name(experiment)
        self.prefix = resource_name(experiment)  # meshlab's routes are named this (+ -match-<i>)
        self.last_applied: list[dict[str, Any]] = []  # the server's answers to the last apply
        self.lease_seconds = lease_seconds
        self.renew_every = renew_every  # None: a third of the lease
        self.step_retry_seconds = step_retry_seconds
        self.rollback_deadline = rollback_deadline
        self.holder: str | None = None  # set by hold(): this run claims the routes
        self.heartbeat: Heartbeat | None = None
        self.run_lease: RunLease | None = None  # the experiment's Lease, taken by hold()
        self.in_force: str | None = None  # what the last step this backend applied routes
        self._parent: dict[str, Any] | None = None

    @classmethod
    def from_spec(
        cls,
        experiment: Experiment,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        dry_run: bool = False,
        hold: bool = False,
    ) -> KubernetesMesh:
        """The backend for ``experiment``: flags override ``spec.target.kubeconfig``/``context``.

        Credentials: in-cluster ServiceAccount when running in a pod and neither is given, else the
        kubeconfig (default ``$KUBECONFIG`` / ``~/.kube/config``) and context. The namespace is
        ``metadata.namespace``. ``dry_run`` makes every write a server-side dry run. ``hold``
        (for the run that drives the experiment) stamps a lease on every step and keeps it alive.
        """
        target = experiment.spec.target
        api_client = load_api_client(
            kubeconfig=kubeconfig or target.kubeconfig, context=context or target.context
        )
        objects = KubeObjects(
            api_client,
            experiment.metadata.namespace,
            field_manager=target.field_manager,
            dry_run=dry_run,
            timeout=target.request_timeout,
        )
        try:
            mesh = cls(
                experiment,
                objects,
                adopt_virtual_service=target.adopt_virtual_service,
                adopt_http_route=target.adopt_http_route,
                conflict_retries=target.conflict_retries,
                lease_seconds=target.lease.duration,
                renew_every=target.lease.renew_every,
                step_retry_seconds=target.step_retry,
                rollback_deadline=target.rollback_deadline,
            )
        except BaseException:
            api_client.close()
            raise
        if hold and not dry_run:
            try:
                mesh.hold()
            except BaseException:
                mesh.close()
                raise
        return mesh

    @classmethod
    def for_run(cls, experiment: Experiment, run: RunContext) -> MeshRun:
        """The backend holding the routes for ``meshlab start`` (the registry's uniform factory).

        Mirrored predictions come from the KServe logger's collector, not from the backend; the
        load's URL is ``--url``.
        """
        mesh = cls.from_spec(
            experiment,
            kubeconfig=run.kubeconfig,
            context=run.context,
            dry_run=run.dry_run,
            hold=True,
        )
        return MeshRun(mesh, list, None)

    def hold(self) -> None:
        """Claim the experiment for this process, before anything is applied; renewed until close.

        Takes the experiment's ``coordination.k8s.io`` Lease (:mod:`meshlab.mesh.kube_runlease`;
        :class:`~meshlab.mesh.kube_runlease.LeaseHeldError`, exit 2, when another run holds it)
        and starts the heartbeat; every step then carries the route object's lease as well. A dry
        run takes nothing: it writes nothing either.
        """
        self.holder = new_holder()
        if not self.dry_run:
            self.run_lease, self.heartbeat = take_hold(
                self.objects,
                experiment=self.experiment.metadata.name,
                lease_name=self.resource,
                route=(self.route_kind, self.route_name),
                holder=self.holder,
                seconds=self.lease_seconds,
                every=self.renew_every,
                clock=self.clock,
            )

    @property
    def dry_run(self) -> bool:
        """Whether writes are server-side dry runs."""
        return self.objects.dry_run

    @property
    def route_name(self) -> str:
        """The route object carrying meshlab's routes: the adopted one or ``meshlab-<name>``."""
        return self.adopt_route or self.resource

    @property
    def where(self) -> str:
        """``HTTPRoute models/meshlab-fraud-canary``: the route object, for messages."""
        return f"{self.route_kind} {self.namespace}/{self.route_name}"

    # -- MeshBackend -----------------------------------------------------------------------------

    def apply(self, plan: RoutingPlan) -> None:
        """Apply the plan's objects in the experiment's routing API; all or nothing.

        Requests the API server fails with 5xx/429 or cannot be reached for are retried for
        ``step_retry_seconds``; a timed-out write is checked, not retried (the step may be in force).
        """
        self.apply_objects(plan.step, self.render(plan))

    def apply_objects(self, step: str, documents: Sequence[Manifest]) -> None:
        """Apply objects already rendered for step ``step`` (what :meth:`apply` does after rendering)."""
        check_not_lost(self.run_lease, step)
        with self.objects.retrying((KubeUnavailableError,), self.step_retry_seconds):
            self._apply(step, documents)
        if self.heartbeat is not None:
            self.heartbeat.routes = True  # the route object carries our lease from now on

    def _apply(self, step: str, documents: Sequence[Manifest]) -> None:
        route, needed = check_step(
            documents, self.namespace, self.resource, self.route_kind, self.objects.kinds
        )
        stamp = step_stamp(
            self.experiment.metadata.name, step, self.clock(), self.holder, self.lease_seconds
        )
        route = annotated(route, stamp)
        needed = [annotated(d, stamp) if stepped(d) else d for d in needed]
        needed = backend_services(
            needed, self._parent_service(route), self.experiment.spec.service.port
        )
        previous = read_previous(self.objects, needed)
        current = self.objects.get(self.route_kind, self.route_name)
        if self.adopt_route is None:
            refuse_foreign(current, self.route_kind, self.namespace, self.resource)
        check_claim(self.holder, self.in_force is not None, current, step, self.where)
        self.last_applied, timed_out = write_all_or_nothing(
            self.objects,
            previous,
            lambda: self._write_route(route, stamp),
            (self.route_kind, self.route_name),
            stamp,
        )
        self.in_force = step_label(self.experiment, step)
        if timed_out is not None:
            log.warning("%s; the server applied it anyway, step %s is in force", timed_out, step)
            return
        log.info(
            "%s step %s on %s%s",
            "validated (dry run)" if self.dry_run else "applied",
            step,
            self.where,
            "" if self.adopt_route is None else " (adopted)",
        )

    def _write_route(self, route: Manifest, stamp: dict[str, str]) -> dict[str, Any]:
        """Write the route object: meshlab's own by apply, an adopted one by read-modify-write."""
        if self.adopt_route is None:
            return self.objects.apply(route)
        return adopt_routes(
            self.objects,
            self.route_name,
            self.experiment,
            route["spec"].get(route_field(route), []),
            stamp,
            retries=self.conflict_retries,
            kind=self.route_kind,
        )

    def _parent_service(self, route: Manifest) -> dict[str, Any] | None:
        """The Service a GAMMA route attaches to, read once from the cluster (None: none)."""
        name = parent_name(route)
        if name is None:
            return None
        if self._parent is None:
            self._parent = self.objects.get("Service", name)
        return self._parent

    def status(self) -> RoutingState | None:
        """The step in force, read back from the route object's annotations in the cluster."""
        current = self.objects.get(self.route_kind, self.route_name)
        prefix = self.prefix if self.adopt_route else None
        return routing_state(current, self.experiment.metadata.name, prefix, self.where)

    def lease(self) -> Lease | None:
        """The lease of the meshlab run holding this experiment's routes, if one does."""
        current = self.objects.get(self.route_kind, self.route_name)
        return route_lease(current, self.experiment.metadata.name)

    def rollback(self) -> None:
        """All traffic to the baseline: rollback routes, or the adopted route object restored.

        Depends on the API server only: transient failures (5xx, timeouts, connection refused) are
        retried with backoff for ``rollback_deadline`` seconds; then one line says what is still
        routed where. Success is claimed only after the server's answer shows the rollback routes.
        A no-op when meshlab's routes are absent (never applied, or cleaned up).
        """
        began, sent = time.monotonic(), self.objects.attempts
        try:
            with self.objects.retrying(TRANSIENT, self.rollback_deadline):
                self._rollback()
        except MeshError as exc:
            what = (
                f"still routes {self.in_force} as last applied by this meshlab"
                if self.in_force
                else "still routes the step last applied to it (see `meshlab status`)"
            )
            raise MeshError(
                f"rollback NOT applied after {time.monotonic() - began:.0f} s and "
                f"{self.objects.attempts - sent} request(s) (last error: {exc}); {self.where} "
                f"{what}; run `meshlab rollback` once the API server answers"
            ) from exc

    def _rollback(self) -> None:
        if self.adopt_route is not None:
            self._restore_adopted()
            current = self.objects.get(self.route_kind, self.route_name) or {}
            left = owned_routes(current, self.prefix)
            if left:
                raise MeshError(f"meshlab's routes {left} are still there")
            self.in_force = f"no meshlab route (the adopted {self.route_kind} restored)"
            return
        if self.objects.get(self.route_kind, self.resource) is None:
            # meshlab routes nothing yet: creating rollback routes now would change routing, not undo
            log.info("no %s: nothing to roll back", self.where)
            return
        rendered = self.render(step_plan(self.experiment, rollback_step()))
        self._apply("rollback", rendered)
        wrong = not_as_rendered(self.last_applied[-1].get("spec"), rendered[-1]["spec"])
        if wrong and not self.dry_run:
            raise MeshError(f"the server's answer to the rollback differs: {wrong}")

    def cleanup(self) -> None:
        """Remove every trace of the experiment: restore an adopted route object, delete the rest.

        The route object goes first, so no route ever names a subset or Service that is gone; a
        dead run's Lease goes last (this run's own is let go by :meth:`close`).
        """
        if self.adopt_route is not None:
            self._restore_adopted()
        else:
            self.objects.delete(self.route_kind, self.resource)
        for doc in self.baseline_objects[:-1]:
            self.objects.delete(doc["kind"], doc["metadata"]["name"])
        if self.run_lease is None:
            delete_if_dead(self.objects, self.resource, clock=self.clock)

    def faults(self) -> list[Fault]:
        """Failed components of the mesh: none that meshlab runs (the agreed ``MeshBackend.faults``).

        The cluster's data plane is not meshlab's to watch; the API server's failures surface as
        :class:`~meshlab.errors.MeshError` from the call that met them.
        """
        return []

    def release(self, holder: str) -> bool:
        """Remove ``holder``'s lease from the routes if it still holds them (ours, or a dead run's)."""
        return release(self.objects, self.route_name, holder, self.route_kind)

    def close(self) -> None:
        """Give up the leases (if held) and release the connections; routing stays as it is."""
        try:
            let_go(
                self.objects,
                holder=self.holder,
                heartbeat=self.heartbeat,
                run_lease=self.run_lease,
                route=(self.route_kind, self.route_name),
                where=self.where,
            )
        finally:
            self.objects.api_client.close()

    # -- internals -------------------------------------------------------------------------------

    def _restore_adopted(self) -> None:
        restore_adopted(
            self.objects,
            self.route_name,
            self.experiment,
            retries=self.conflict_retries,
            kind=self.route_kind,
        )
