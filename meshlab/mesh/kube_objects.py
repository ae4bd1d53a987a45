"""Checks and edits of the objects meshlab writes to a cluster, and a step's all-or-nothing write.

What a step may contain (in either routing API), the annotations stamped on it, backend Services
completed from their parent Service, the refusal to take over an object meshlab did not create,
what to re-apply to get a stored object back, and whether the stored routes are what meshlab
rendered (the check a rollback must pass before meshlab says it rolled back): pure functions.
The I/O is only through the :class:`~meshlab.mesh.kube_client.KubeObjects` passed in:
:func:`read_previous`, :func:`write_all_or_nothing` (the objects a step needs, then its route
object; what was written put back if a write fails), :func:`restore` and :func:`landed_with`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from meshlab.errors import ConfigError, ConflictError, MeshError
from meshlab.manifests import Manifest, step_by_name
from meshlab.manifests.istio import MANAGED_BY
from meshlab.manifests.meta import STEP_ANNOTATION
from meshlab.mesh.base import RoutingState
from meshlab.mesh.kube_adopt import (
    APPLIED_AT_ANNOTATION,
    EXPERIMENT_ANNOTATION,
    is_owned_route,
    route_field,
)
from meshlab.mesh.kube_client import KubeObjects, KubeTimeoutError
from meshlab.mesh.kube_lease import parse_time
from meshlab.mesh.kube_resources import RESOURCES, Resource
from meshlab.spec import Experiment

DR, VS = "DestinationRule", "VirtualService"


def check_step(
    documents: Sequence[Manifest],
    namespace: str,
    resource: str,
    route_kind: str,
    served: Mapping[str, Resource] = RESOURCES,
) -> tuple[Manifest, list[Manifest]]:
    """A step's route object (its last document) and the objects it needs first, all checked.

    Every document must be a kind meshlab writes, at its served apiVersion, in the experiment's
    namespace (``served``: where the backend addresses each kind), and named like meshlab's objects: the route object and a DestinationRule exactly
    ``resource``, backend Services ``meshlab-...``.
    """
    if not documents or documents[-1].get("kind") != route_kind:
        raise MeshError(f"a step ends with its {route_kind}, the object carrying the routes")
    for doc in documents:
        kind = str(doc.get("kind"))
        metadata = doc.get("metadata") or {}
        expected = served.get(kind)
        if expected is not None and doc.get("apiVersion") != expected.api_version:
            raise MeshError(f"{kind}: apiVersion must be {expected.api_version}")
        if metadata.get("namespace", namespace) != namespace:
            raise MeshError(
                f"{kind} {metadata.get('name')}: namespace {metadata.get('namespace')} "
                f"differs from the experiment's {namespace}"
            )
        name = str(metadata.get("name"))
        if name != resource and (kind != "Service" or not name.startswith("meshlab-")):
            raise MeshError(f"{kind}: meshlab only writes objects named {resource}")
    kinds = [d.get("kind") for d in documents if d.get("kind") != "Service"]
    if len(set(kinds)) != len(kinds):
        raise MeshError("a step has one object of each routing kind")
    return documents[-1], list(documents[:-1])


def backend_services(
    documents: Sequence[Manifest], parent: dict[str, Any] | None, port: int
) -> list[Manifest]:
    """``documents`` with each Service completed from its ``parent`` Service, as the cluster has it.

    A backend Service selects the parent's pods (its selector) that carry the version's labels, and
    forwards to the parent's target port for ``port``. MeshError if the parent or its port is missing.
    """
    services = [d for d in documents if d.get("kind") == "Service"]
    if not services:
        return list(documents)
    if parent is None:
        raise MeshError(
            "spec.service.host: its Service does not exist; with target.routing: gateway-api the "
            "HTTPRoute's parent is that Service (GAMMA): create it (kubectl get svc) first"
        )
    spec = parent.get("spec") or {}
    name = (parent.get("metadata") or {}).get("name")
    ports = [p for p in spec.get("ports") or [] if p.get("port") == port]
    if not ports:
        raise MeshError(
            f"spec.service.port: Service {name} has no port {port}; set the port it serves"
        )
    target = ports[0].get("targetPort", port)
    out = []
    for doc in documents:
        if doc.get("kind") == "Service":
            body = copy.deepcopy(doc)
            body["spec"]["selector"] = {**(spec.get("selector") or {}), **body["spec"]["selector"]}
            for entry in body["spec"]["ports"]:
                entry["targetPort"] = target
            doc = body
        out.append(doc)
    return out


def parent_name(route: Manifest) -> str | None:
    """The Service a GAMMA route attaches to (its first Service parentRef), if any."""
    for ref in (route.get("spec") or {}).get("parentRefs") or []:
        if ref.get("kind") == "Service" and ref.get("group", "") == "":
            return str(ref["name"])
    return None


def not_as_rendered(stored: Any, rendered: Any, path: str = "spec") -> str | None:
    """Where ``stored`` differs from what meshlab ``rendered`` (None: it holds all of it).

    Fields the server added (defaults) are allowed; every rendered field must be there, with the
    same value, and lists must have the same length. So a rollback read back this way routes
    exactly as rendered, in any routing API.
    """
    if isinstance(rendered, dict):
        if not isinstance(stored, dict):
            return f"{path} is not an object"
        for key, value in rendered.items():
            if key not in stored:
                return f"{path}.{key} is missing"
            found = not_as_rendered(stored[key], value, f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(rendered, list):
        if not isinstance(stored, list) or len(stored) != len(rendered):
            return f"{path} has {len(stored) if isinstance(stored, list) else 'no'} entries"
        for i, (s, r) in enumerate(zip(stored, rendered, strict=True)):
            found = not_as_rendered(s, r, f"{path}[{i}]")
            if found:
                return found
        return None
    return None if stored == rendered else f"{path} is {stored!r}, not {rendered!r}"


def annotated(manifest: Manifest, stamp: dict[str, str]) -> Manifest:
    metadata = dict(manifest.get("metadata") or {})
    metadata["annotations"] = {**(metadata.get("annotations") or {}), **stamp}
    return {**manifest, "metadata": metadata}


def refuse_foreign(current: dict[str, Any] | None, kind: str, namespace: str, name: str) -> None:
    """Never take over an object meshlab did not create, even if it has meshlab's name."""
    if current is None:
        return
    labels = (current.get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in MANAGED_BY.items()):
        adopt = {VS: "adoptVirtualService", "HTTPRoute": "adoptHTTPRoute"}.get(kind)
        hint = f" or adopt it with spec.target.{adopt}" if adopt else ""
        raise ConflictError(
            f"{kind} {namespace}/{name} exists but is not managed by meshlab (no label "
            f"app.kubernetes.io/managed-by=meshlab); rename the experiment{hint}"
        )


def applied_config(stored: dict[str, Any]) -> dict[str, Any]:
    """What to server-side apply to get ``stored`` back: no server-populated metadata."""
    metadata = stored.get("metadata") or {}
    kept = {k: metadata[k] for k in ("name", "namespace", "labels", "annotations") if k in metadata}
    return {
        "apiVersion": stored["apiVersion"],
        "kind": stored["kind"],
        "metadata": kept,
        "spec": stored.get("spec", {}),
    }


def parse_applied_at(value: str | None, name: str) -> float:
    when = parse_time(value)
    if when is None:
        raise MeshError(
            f"{name}: annotation {APPLIED_AT_ANNOTATION}={value!r} is not a time; re-apply the step"
        )
    return when


def not_baseline_only(virtual_service: dict[str, Any], baseline: str) -> str | None:
    """What in a VirtualService still reaches another subset than ``baseline`` (None: nothing)."""
    for route in (virtual_service.get("spec") or {}).get("http", []):
        if "mirror" in route:
            return f"a mirror in route {route.get('name')!r}"
        for target in route.get("route", []):
            subset = (target.get("destination") or {}).get("subset")
            if subset != baseline and target.get("weight", 100) != 0:
                return f"route {route.get('name')!r} sending to subset {subset!r}"
    return None


Previous = list[tuple[Manifest, dict[str, Any] | None]]  # (object written, what was there before)


def restore(objects: KubeObjects, previous: Previous, cause: Exception) -> None:
    """Put back what the objects written before a failure were (delete those just created)."""
    for doc, before in reversed(previous):
        kind, name = doc["kind"], doc["metadata"]["name"]
        try:
            if before is None:
                objects.delete(kind, name)
            else:
                objects.apply(applied_config(before))
        except MeshError as exc:
            raise MeshError(
                f"{cause}; putting {kind} {objects.namespace}/{name} back also "
                f"failed ({exc}); run `meshlab rollback` once the cluster answers"
            ) from exc


def routing_state(
    current: dict[str, Any] | None, experiment: str, adopted_prefix: str | None, where: str
) -> RoutingState | None:
    """The step in force as the route object ``current`` records it (None: not this experiment's).

    An adopted object (``adopted_prefix`` given) routes for meshlab only while it holds its routes.
    """
    if current is None:
        return None
    annotations = (current.get("metadata") or {}).get("annotations") or {}
    if annotations.get(EXPERIMENT_ANNOTATION) != experiment or STEP_ANNOTATION not in annotations:
        return None
    if adopted_prefix is not None and not owned_routes(current, adopted_prefix):
        return None
    applied_at = parse_applied_at(annotations.get(APPLIED_AT_ANNOTATION), where)
    return RoutingState(experiment, str(annotations[STEP_ANNOTATION]), applied_at)


def owned_routes(current: dict[str, Any], prefix: str) -> list[str]:
    """Names of meshlab's routes (or rules) in a route object."""
    routes = (current.get("spec") or {}).get(route_field(current), [])
    return [str(r["name"]) for r in routes if is_owned_route(r, prefix)]


def step_label(experiment: Experiment, step: str) -> str:
    """``canary 25% (step 2)``: what a step routes, for messages."""
    try:
        return f"{step_by_name(experiment, step).label} (step {step})"
    except ConfigError:
        return f"step {step}"


def landed_with(
    objects: KubeObjects, kind: str, name: str, stamp: dict[str, str]
) -> dict[str, Any] | None:
    """The route object if it carries exactly ``stamp`` (a write that timed out did land)."""
    try:
        current = objects.get(kind, name)
    except MeshError:
        return None
    annotations = ((current or {}).get("metadata") or {}).get("annotations") or {}
    landed = all(annotations.get(k) == v for k, v in stamp.items())
    return current if landed and current is not None else None


def read_previous(objects: KubeObjects, needed: Sequence[Manifest]) -> Previous:
    """Each object a step needs with what is stored under its name now (refusing foreign ones)."""
    previous: Previous = []
    for doc in needed:
        kind, name = doc["kind"], doc["metadata"]["name"]
        current = objects.get(kind, name)
        refuse_foreign(current, kind, objects.namespace, name)
        previous.append((doc, current))
    return previous


def write_all_or_nothing(
    objects: KubeObjects,
    previous: Previous,
    write_route: Callable[[], dict[str, Any]],
    route: tuple[str, str],
    stamp: dict[str, str],
) -> tuple[list[dict[str, Any]], Exception | None]:
    """Write a step: the objects it needs first, then its route object (``write_route``).

    Returns the server's answers, and the timeout that was met if the route object's write timed
    out yet landed (it carries ``stamp``: the step is in force). On any other failure, even an
    unexpected one, what was written is put back (:func:`restore`) and the failure re-raised:
    never half a step. A dry run persists nothing, so there is nothing to put back.
    """
    applied: list[dict[str, Any]] = []
    try:
        for doc, _ in previous:
            applied.append(objects.apply(doc))
        applied.append(write_route())
    except Exception as exc:
        if objects.dry_run:
            raise
        if isinstance(exc, KubeTimeoutError):
            landed = landed_with(objects, *route, stamp)
            if landed is not None:
                return [*applied, landed], exc
        restore(objects, previous[: len(applied)], exc)
        raise
    return applied, None


def stepped(doc: Manifest) -> bool:
    """Whether the renderer marks ``doc`` with the step (a DestinationRule; not a Service)."""
    return STEP_ANNOTATION in ((doc.get("metadata") or {}).get("annotations") or {})
