"""The Kubernetes/Istio mesh backend: apply an experiment's DestinationRule and VirtualService.

``KubernetesMesh.from_spec(experiment, kubeconfig=..., context=..., dry_run=...)`` builds it from
``spec.target``. Objects meshlab owns (``meshlab-<experiment>``) are written by server-side apply
with field manager ``target.fieldManager`` and ``force`` (meshlab is their declared owner, and a
rollback must win over a stray ``kubectl edit``); an object of that name not labelled
``app.kubernetes.io/managed-by: meshlab`` is never overwritten. With
``target.adoptVirtualService`` meshlab edits a user's VirtualService by read-modify-write with the
resourceVersion (retrying a bounded number of 409s) and restores it on rollback/cleanup.

State lives in the cluster, so ``status`` and ``rollback`` work from any machine: the VirtualService
carries ``meshlab.io/experiment``, ``meshlab.io/step`` and ``meshlab.io/applied-at`` annotations,
and, while a run holds it (``hold``), the lease of :mod:`meshlab.mesh.kube_lease`.

A step is applied all-or-nothing: the DestinationRule first (subsets must exist before routes name
them), then the VirtualService; if the VirtualService write fails, the previous DestinationRule is
put back (deleted if meshlab had just created it). A write that timed out is checked, not retried:
if the server did apply it, the step is in force; 5xx and refused connections are retried briefly.
A rollback retries every transient failure within its deadline. With ``dry_run`` every write is a server-side dry
run (``dryRun=All``): validated and admitted by the real server, persisted nowhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from meshlab.errors import ConflictError, MeshError
from meshlab.manifests import Manifest, Step, manifests, owned_route_prefix, resource_name
from meshlab.manifests import rollback as rollback_step
from meshlab.manifests.istio import STEP_ANNOTATION
from meshlab.mesh.base import Fault, RoutingState
from meshlab.mesh.kube_adopt import APPLIED_AT_ANNOTATION, EXPERIMENT_ANNOTATION, is_owned_route
from meshlab.mesh.kube_adoption import adopt_routes, restore_adopted
from meshlab.mesh.kube_client import (
    TRANSIENT,
    IstioObjects,
    KubeTimeoutError,
    KubeUnavailableError,
    load_api_client,
)
from meshlab.mesh.kube_lease import (
    DEFAULT_LEASE_SECONDS,
    HEARTBEAT_ANNOTATION,
    HOLDER_ANNOTATION,
    LEASE_ANNOTATION,
    Heartbeat,
    Lease,
    new_holder,
    parse_time,
    release,
    timestamp,
)
from meshlab.mesh.kube_objects import (
    DR,
    VS,
    annotated,
    applied_config,
    check_step,
    not_baseline_only,
    parse_applied_at,
    refuse_foreign,
)
from meshlab.spec import Experiment

log = logging.getLogger(__name__)


class KubernetesMesh:
    """Istio on Kubernetes behind :class:`~meshlab.mesh.base.MeshBackend`."""

    name = "kubernetes"

    def __init__(
        self,
        experiment: Experiment,
        objects: IstioObjects,
        *,
        adopt_virtual_service: str | None = None,
        conflict_retries: int = 5,
        clock: Callable[[], float] = time.time,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        step_retry_seconds: float = 10.0,
        rollback_deadline: float = 45.0,
    ) -> None:
        self.experiment = experiment
        self.objects = objects
        self.adopt_virtual_service = adopt_virtual_service
        self.conflict_retries = conflict_retries
        self.clock = clock
        self.namespace = experiment.metadata.namespace
        self.resource = resource_name(experiment)
        self.prefix = owned_route_prefix(experiment)
        self.last_applied: list[dict[str, Any]] = []  # the server's answers to the last apply
        self.lease_seconds = lease_seconds
        self.step_retry_seconds = step_retry_seconds
        self.rollback_deadline = rollback_deadline
        self.holder: str | None = None  # set by hold(): this run claims the routes
        self.heartbeat: Heartbeat | None = None
        self.in_force: str | None = None  # what the last step this backend applied routes

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
        objects = IstioObjects(
            api_client,
            experiment.metadata.namespace,
            field_manager=target.field_manager,
            dry_run=dry_run,
            timeout=target.request_timeout,
        )
        mesh = cls(
            experiment,
            objects,
            adopt_virtual_service=target.adopt_virtual_service,
            conflict_retries=target.conflict_retries,
        )
        if hold and not dry_run:
            mesh.hold()
        return mesh

    def hold(self) -> None:
        """Claim the routes for this process: every step carries the lease, renewed until close."""
        self.holder = new_holder()

    @property
    def dry_run(self) -> bool:
        """Whether writes are server-side dry runs."""
        return self.objects.dry_run

    @property
    def virtual_service_name(self) -> str:
        """The VirtualService carrying meshlab's routes: the adopted one or ``meshlab-<name>``."""
        return self.adopt_virtual_service or self.resource

    # -- MeshBackend -----------------------------------------------------------------------------

    def apply(self, step: Step, manifests: Sequence[Manifest]) -> None:
        """Apply the step's DestinationRule, then its VirtualService routes; all or nothing.

        Requests the API server fails with 5xx/429 or cannot be reached for are retried for
        ``step_retry_seconds``; a timed-out write is checked, not retried (the step may be in force).
        """
        with self.objects.retrying((KubeUnavailableError,), self.step_retry_seconds):
            self._apply(step, manifests)
        if self.holder is not None and self.heartbeat is None and not self.dry_run:
            renewer = IstioObjects(
                self.objects.api_client,
                self.namespace,
                field_manager=self.objects.field_manager,
                timeout=self.objects.timeout,
            )
            self.heartbeat = Heartbeat(
                renewer, self.virtual_service_name, self.holder, self.lease_seconds
            )
            self.heartbeat.start()

    def _apply(self, step: Step, manifests: Sequence[Manifest]) -> None:
        destination_rule, virtual_service = check_step(manifests, self.namespace, self.resource)
        stamp = self._stamp(step)
        destination_rule = annotated(destination_rule, stamp)
        virtual_service = annotated(virtual_service, stamp)
        previous = self.objects.get(DR, self.resource)
        refuse_foreign(previous, DR, self.namespace, self.resource)
        current = self.objects.get(VS, self.virtual_service_name)
        if self.adopt_virtual_service is None:
            refuse_foreign(current, VS, self.namespace, self.resource)
        self._check_claim(current, step)
        applied_dr = self.objects.apply(destination_rule)
        try:
            if self.adopt_virtual_service is None:
                applied_vs = self.objects.apply(virtual_service)
            else:
                applied_vs = self._adopt(virtual_service["spec"].get("http", []), stamp)
        except Exception as exc:  # any failure, even an unexpected one, must not leave half a step
            if self.dry_run:
                raise
            landed = self._in_force(stamp) if isinstance(exc, KubeTimeoutError) else None
            if landed is not None:
                log.warning("%s; the server applied it anyway, step %s is in force", exc, step.name)
                self.last_applied = [applied_dr, landed]
                self.in_force = f"{step.label} (step {step.name})"
                return
            self._restore_destination_rule(previous, exc)
            raise
        self.last_applied = [applied_dr, applied_vs]
        self.in_force = f"{step.label} (step {step.name})"
        log.info(
            "%s step %s on %s/%s%s",
            "validated (dry run)" if self.dry_run else "applied",
            step.name,
            self.namespace,
            self.virtual_service_name,
            "" if self.adopt_virtual_service is None else " (adopted)",
        )

    def status(self) -> RoutingState | None:
        """The step in force, read back from the VirtualService's annotations in the cluster."""
        current = self.objects.get(VS, self.virtual_service_name)
        if current is None:
            return None
        annotations = (current.get("metadata") or {}).get("annotations") or {}
        if annotations.get(EXPERIMENT_ANNOTATION) != self.experiment.metadata.name:
            return None
        if STEP_ANNOTATION not in annotations:
            return None
        routes = (current.get("spec") or {}).get("http", [])
        if self.adopt_virtual_service and not any(is_owned_route(r, self.prefix) for r in routes):
            return None
        return RoutingState(
            experiment=self.experiment.metadata.name,
            step=str(annotations[STEP_ANNOTATION]),
            applied_at=parse_applied_at(
                annotations.get(APPLIED_AT_ANNOTATION), self.virtual_service_name
            ),
        )

    def lease(self) -> Lease | None:
        """The lease of the meshlab run holding this experiment's routes, if one does."""
        current = self.objects.get(VS, self.virtual_service_name)
        annotations = ((current or {}).get("metadata") or {}).get("annotations") or {}
        if annotations.get(EXPERIMENT_ANNOTATION) != self.experiment.metadata.name:
            return None
        applied = parse_time(annotations.get(APPLIED_AT_ANNOTATION)) or 0.0
        return Lease.from_annotations(annotations, applied)

    def rollback(self) -> None:
        """All traffic to the baseline: rollback routes, or the adopted VirtualService restored.

        Depends on the API server only: transient failures (5xx, timeouts, connection refused) are
        retried with backoff for ``rollback_deadline`` seconds; then one line says what is still
        routed where. Success is claimed only after the server's answer shows baseline-only routes.
        A no-op when meshlab's routes are absent (never applied, or cleaned up).
        """
        began, sent = time.monotonic(), self.objects.attempts
        try:
            with self.objects.retrying(TRANSIENT, self.rollback_deadline):
                self._rollback()
        except MeshError as exc:
            where = f"VirtualService {self.namespace}/{self.virtual_service_name}"
            what = (
                f"still routes {self.in_force} as last applied by this meshlab"
                if self.in_force
                else "still routes the step last applied to it (see `meshlab status`)"
            )
            raise MeshError(
                f"rollback NOT applied after {time.monotonic() - began:.0f} s and "
                f"{self.objects.attempts - sent} request(s) (last error: {exc}); {where} {what}; "
                "run `meshlab rollback` once the API server answers"
            ) from exc

    def _rollback(self) -> None:
        if self.adopt_virtual_service is not None:
            self._restore_adopted()
            current = self.objects.get(VS, self.virtual_service_name) or {}
            left = [
                r
                for r in (current.get("spec") or {}).get("http", [])
                if is_owned_route(r, self.prefix)
            ]
            if left:
                raise MeshError(f"meshlab's routes {[r['name'] for r in left]} are still there")
            self.in_force = "no meshlab route (the adopted VirtualService restored)"
            return
        if self.objects.get(VS, self.resource) is None:
            # meshlab routes nothing yet: creating rollback routes now would change routing, not undo
            log.info("no VirtualService %s/%s: nothing to roll back", self.namespace, self.resource)
            return
        step = rollback_step()
        self._apply(step, manifests(self.experiment, step))
        wrong = not_baseline_only(self.last_applied[-1], self.experiment.spec.baseline.subset)
        if wrong:
            raise MeshError(f"the server's answer to the rollback still has {wrong}")

    def cleanup(self) -> None:
        """Remove every trace of the experiment: restore an adopted VirtualService, delete the rest.

        The VirtualService goes first, so no route ever names a subset whose DestinationRule is gone.
        """
        if self.adopt_virtual_service is not None:
            self._restore_adopted()
        else:
            self.objects.delete(VS, self.resource)
        self.objects.delete(DR, self.resource)

    def faults(self) -> list[Fault]:
        """Failed components of the mesh: none that meshlab runs (the agreed ``MeshBackend.faults``).

        The cluster's data plane is not meshlab's to watch; the API server's failures surface as
        :class:`~meshlab.errors.MeshError` from the call that met them.
        """
        return []

    def release(self, holder: str) -> bool:
        """Remove ``holder``'s lease from the routes if it still holds them (ours, or a dead run's)."""
        return release(self.objects, self.virtual_service_name, holder)

    def close(self) -> None:
        """Give up the lease (if held) and release the connections; routing stays as it is."""
        try:
            if self.heartbeat is not None:
                self.heartbeat.stop()
            if self.holder is not None and not self.dry_run:
                self.release(self.holder)
        except MeshError as exc:
            log.warning("lease on %s not released (it expires by itself): %s", self.resource, exc)
        finally:
            self.objects.api_client.close()

    # -- internals -------------------------------------------------------------------------------

    def _check_claim(self, current: dict[str, Any] | None, step: Step) -> None:
        """A holding run that lost its routes stops: to another run, or to a manual rollback.

        Its own rollback still goes ahead when nobody else holds them (re-applying rollback routes
        a person already applied changes nothing), never over another run's routes.
        """
        if self.holder is None or self.in_force is None or current is None:
            return
        held_by = ((current.get("metadata") or {}).get("annotations") or {}).get(HOLDER_ANNOTATION)
        if held_by == self.holder or (held_by is None and step.kind == "rollback"):
            return
        why = (
            f"another meshlab holds them now ({held_by}); this run leaves them to it"
            if held_by
            else "its lease was removed (e.g. by 'meshlab rollback'); this run stops"
        )
        raise ConflictError(
            f"VirtualService {self.namespace}/{self.virtual_service_name} is no longer held by "
            f"this meshlab: {why}"
        )

    def _stamp(self, step: Step) -> dict[str, str]:
        now = timestamp(self.clock())
        stamp = {
            EXPERIMENT_ANNOTATION: self.experiment.metadata.name,
            STEP_ANNOTATION: step.name,
            APPLIED_AT_ANNOTATION: now,
        }
        if self.holder is not None:
            stamp[HOLDER_ANNOTATION] = self.holder
            stamp[HEARTBEAT_ANNOTATION] = now
            stamp[LEASE_ANNOTATION] = f"{self.lease_seconds:g}"
        return stamp

    def _in_force(self, stamp: dict[str, str]) -> dict[str, Any] | None:
        """The VirtualService if it carries exactly this apply's stamp (the write landed)."""
        try:
            current = self.objects.get(VS, self.virtual_service_name)
        except MeshError:
            return None
        annotations = ((current or {}).get("metadata") or {}).get("annotations") or {}
        landed = all(annotations.get(k) == v for k, v in stamp.items())
        return current if landed and current is not None else None

    def _adopt(self, routes: list[dict[str, Any]], stamp: dict[str, str]) -> dict[str, Any]:
        return adopt_routes(
            self.objects,
            self.virtual_service_name,
            self.experiment,
            routes,
            stamp,
            retries=self.conflict_retries,
        )

    def _restore_adopted(self) -> None:
        restore_adopted(
            self.objects, self.virtual_service_name, self.experiment, retries=self.conflict_retries
        )

    def _restore_destination_rule(self, previous: dict[str, Any] | None, cause: Exception) -> None:
        try:
            if previous is None:
                self.objects.delete(DR, self.resource)
            else:
                self.objects.apply(applied_config(previous))
        except MeshError as exc:
            raise MeshError(
                f"{cause}; putting DestinationRule {self.namespace}/{self.resource} back also "
                f"failed ({exc}); run `meshlab rollback` once the cluster answers"
            ) from exc
