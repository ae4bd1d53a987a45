"""The Kubernetes/Istio mesh backend: apply an experiment's DestinationRule and VirtualService.

``KubernetesMesh.from_spec(experiment, kubeconfig=..., context=..., dry_run=...)`` builds it from
``spec.target``. Objects meshlab owns (``meshlab-<experiment>``) are written by server-side apply
with field manager ``target.fieldManager`` and ``force`` (meshlab is their declared owner, and a
rollback must win over a stray ``kubectl edit``); an object of that name not labelled
``app.kubernetes.io/managed-by: meshlab`` is never overwritten. With
``target.adoptVirtualService`` meshlab edits a user's VirtualService by read-modify-write with the
resourceVersion (retrying a bounded number of 409s) and restores it on rollback/cleanup.

State lives in the cluster, so ``status`` and ``rollback`` work from any machine: the VirtualService
carries ``meshlab.io/experiment``, ``meshlab.io/step`` and ``meshlab.io/applied-at`` annotations.

A step is applied all-or-nothing: the DestinationRule first (subsets must exist before routes name
them), then the VirtualService; if the VirtualService write fails, the previous DestinationRule is
put back (deleted if meshlab had just created it). A write that timed out is checked, not retried:
if the server did apply it, the step is in force. With ``dry_run`` every write is a server-side dry
run (``dryRun=All``): validated and admitted by the real server, persisted nowhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from meshlab.errors import ConflictError, MeshError
from meshlab.manifests import Manifest, Step, manifests, owned_route_prefix, resource_name
from meshlab.manifests import rollback as rollback_step
from meshlab.manifests.istio import MANAGED_BY, STEP_ANNOTATION
from meshlab.mesh.base import Fault, RoutingState
from meshlab.mesh.kube_adopt import (
    APPLIED_AT_ANNOTATION,
    EXPERIMENT_ANNOTATION,
    adopt,
    adopted_by,
    is_owned_route,
    restored,
    serves_host,
)
from meshlab.mesh.kube_client import (
    API_VERSION,
    IstioObjects,
    KubeTimeoutError,
    load_api_client,
)
from meshlab.spec import Experiment

log = logging.getLogger(__name__)

DR, VS = "DestinationRule", "VirtualService"


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

    @classmethod
    def from_spec(
        cls,
        experiment: Experiment,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        dry_run: bool = False,
    ) -> KubernetesMesh:
        """The backend for ``experiment``: flags override ``spec.target.kubeconfig``/``context``.

        Credentials: in-cluster ServiceAccount when running in a pod and neither is given, else the
        kubeconfig (default ``$KUBECONFIG`` / ``~/.kube/config``) and context. The namespace is
        ``metadata.namespace``. ``dry_run`` makes every write a server-side dry run.
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
        return cls(
            experiment,
            objects,
            adopt_virtual_service=target.adopt_virtual_service,
            conflict_retries=target.conflict_retries,
        )

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
        """Apply the step's DestinationRule, then its VirtualService routes; all or nothing."""
        destination_rule, virtual_service = self._check(manifests)
        stamp = self._stamp(step)
        destination_rule = _annotated(destination_rule, stamp)
        virtual_service = _annotated(virtual_service, stamp)
        previous = self.objects.get(DR, self.resource)
        _refuse_foreign(previous, DR, self.namespace, self.resource)
        if self.adopt_virtual_service is None:
            _refuse_foreign(self.objects.get(VS, self.resource), VS, self.namespace, self.resource)
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
                return
            self._restore_destination_rule(previous, exc)
            raise
        self.last_applied = [applied_dr, applied_vs]
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
            applied_at=_parse_time(
                annotations.get(APPLIED_AT_ANNOTATION), self.virtual_service_name
            ),
        )

    def rollback(self) -> None:
        """All traffic to the baseline: rollback routes, or the adopted VirtualService restored.

        A no-op when meshlab's routes are absent (never applied, or cleaned up).
        """
        if self.adopt_virtual_service is not None:
            self._restore_adopted()
            return
        if self.objects.get(VS, self.resource) is None:
            # meshlab routes nothing yet: creating rollback routes now would change routing, not undo
            log.info("no VirtualService %s/%s: nothing to roll back", self.namespace, self.resource)
            return
        step = rollback_step()
        self.apply(step, manifests(self.experiment, step))

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
        """Always []: the cluster's controllers restart pods; failing pods show in the metrics."""
        return []

    def close(self) -> None:
        """Release the HTTP connections; routing stays as it is."""
        self.objects.api_client.close()

    # -- internals -------------------------------------------------------------------------------

    def _check(self, documents: Sequence[Manifest]) -> tuple[Manifest, Manifest]:
        by_kind = {doc.get("kind"): doc for doc in documents}
        if len(documents) != 2 or set(by_kind) != {DR, VS}:
            raise MeshError("a step is exactly one DestinationRule and one VirtualService")
        for doc in documents:
            metadata = doc.get("metadata") or {}
            if doc.get("apiVersion") != API_VERSION:
                raise MeshError(f"{doc['kind']}: apiVersion must be {API_VERSION}")
            if metadata.get("namespace", self.namespace) != self.namespace:
                raise MeshError(
                    f"{doc['kind']} {metadata.get('name')}: namespace {metadata.get('namespace')} "
                    f"differs from the experiment's {self.namespace}"
                )
            if metadata.get("name") != self.resource:
                raise MeshError(f"{doc['kind']}: meshlab only writes objects named {self.resource}")
        return by_kind[DR], by_kind[VS]

    def _stamp(self, step: Step) -> dict[str, str]:
        when = datetime.fromtimestamp(self.clock(), tz=UTC)
        return {
            EXPERIMENT_ANNOTATION: self.experiment.metadata.name,
            STEP_ANNOTATION: step.name,
            APPLIED_AT_ANNOTATION: when.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        }

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
        name = self.virtual_service_name

        def change(current: dict[str, Any]) -> dict[str, Any] | None:
            owner = adopted_by(current)
            if owner not in (None, self.experiment.metadata.name):
                raise ConflictError(
                    f"VirtualService {self.namespace}/{name} is adopted by experiment {owner!r}; "
                    "roll that experiment back before adopting it again"
                )
            host = self.experiment.spec.service.host
            if not serves_host(current, host):
                raise MeshError(
                    f"spec.target.adoptVirtualService: VirtualService {self.namespace}/{name} does "
                    f"not route host {host!r}; adopt the VirtualService whose hosts include it"
                )
            return adopt(current, routes, self.prefix, stamp)

        return self._read_modify_write(name, change, missing_ok=False)

    def _restore_adopted(self) -> None:
        name = self.virtual_service_name

        def change(current: dict[str, Any]) -> dict[str, Any] | None:
            owner = adopted_by(current)
            if owner is None:
                return None  # nothing of meshlab's left: already restored
            if owner != self.experiment.metadata.name:
                raise ConflictError(
                    f"VirtualService {self.namespace}/{name} is adopted by experiment {owner!r}, "
                    f"not {self.experiment.metadata.name!r}; meshlab leaves it alone"
                )
            result, drifted = restored(current, self.prefix)
            if drifted:
                log.warning(
                    "VirtualService %s/%s was edited during the experiment; meshlab removed its own "
                    "routes and kept those edits instead of restoring the saved original",
                    self.namespace,
                    name,
                )
            return result

        self._read_modify_write(name, change, missing_ok=True)

    def _read_modify_write(
        self,
        name: str,
        change: Callable[[dict[str, Any]], dict[str, Any] | None],
        *,
        missing_ok: bool,
    ) -> dict[str, Any]:
        """GET, edit, PUT with the resourceVersion read; on 409 start over (bounded)."""
        attempts = self.conflict_retries + 1
        for attempt in range(1, attempts + 1):
            current = self.objects.get(VS, name)
            if current is None:
                if missing_ok:
                    return {}
                raise MeshError(
                    f"spec.target.adoptVirtualService: VirtualService {self.namespace}/{name} does "
                    "not exist; create it first or remove adoptVirtualService"
                )
            desired = change(current)
            if desired is None:
                return current
            try:
                return self.objects.replace(desired)
            except ConflictError:
                log.info(
                    "VirtualService %s/%s changed meanwhile (409), attempt %d/%d",
                    self.namespace,
                    name,
                    attempt,
                    attempts,
                )
        raise ConflictError(
            f"VirtualService {self.namespace}/{name} kept changing: {attempts} attempts met "
            "409 Conflict; stop the other writer (GitOps controller, kubectl) and re-run"
        )

    def _restore_destination_rule(self, previous: dict[str, Any] | None, cause: Exception) -> None:
        try:
            if previous is None:
                self.objects.delete(DR, self.resource)
            else:
                self.objects.apply(_applied_config(previous))
        except MeshError as exc:
            raise MeshError(
                f"{cause}; putting DestinationRule {self.namespace}/{self.resource} back also "
                f"failed ({exc}); run `meshlab rollback` once the cluster answers"
            ) from exc


def _annotated(manifest: Manifest, stamp: dict[str, str]) -> Manifest:
    metadata = dict(manifest.get("metadata") or {})
    metadata["annotations"] = {**(metadata.get("annotations") or {}), **stamp}
    return {**manifest, "metadata": metadata}


def _refuse_foreign(current: dict[str, Any] | None, kind: str, namespace: str, name: str) -> None:
    """Never take over an object meshlab did not create, even if it has meshlab's name."""
    if current is None:
        return
    labels = (current.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in MANAGED_BY.items()):
        hint = " or adopt it with spec.target.adoptVirtualService" if kind == VS else ""
        raise ConflictError(
            f"{kind} {namespace}/{name} exists but is not managed by meshlab (no label "
            f"app.kubernetes.io/managed-by=meshlab); rename the experiment{hint}"
        )


def _applied_config(stored: dict[str, Any]) -> dict[str, Any]:
    """What to server-side apply to get ``stored`` back: no server-populated metadata."""
    metadata = stored.get("metadata") or {}
    kept = {k: metadata[k] for k in ("name", "namespace", "labels", "annotations") if k in metadata}
    return {
        "apiVersion": stored["apiVersion"],
        "kind": stored["kind"],
        "metadata": kept,
        "spec": stored.get("spec", {}),
    }


def _parse_time(value: str | None, name: str) -> float:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise MeshError(
            f"VirtualService {name}: annotation {APPLIED_AT_ANNOTATION}={value!r} is not a time; "
            "re-apply the step"
        ) from None
