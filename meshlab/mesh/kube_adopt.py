"""Pure edits of an adopted, user-owned route object: insert meshlab's routes, and take them out.

The object is a VirtualService (its routes are ``spec.http``) or an HTTPRoute (``spec.rules``; see
:data:`ROUTE_FIELDS`). Adopting changes only meshlab's named routes or rules (see
:func:`is_owned_route`), which go first so they take effect; every other route and field of the
user's object stays as it is. Before the first
change, the user's labels, annotations and spec are saved as JSON in the ``meshlab.io/original``
annotation; :func:`restored` puts them back. These functions return new dicts and never touch the
cluster: :mod:`meshlab.mesh.kubernetes` does the read-modify-write with the resourceVersion.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from meshlab.manifests.istio import STEP_ANNOTATION

EXPERIMENT_ANNOTATION = "meshlab.io/experiment"
APPLIED_AT_ANNOTATION = "meshlab.io/applied-at"
ORIGINAL_ANNOTATION = "meshlab.io/original"
# The lease of the meshlab run holding the routes (see meshlab.mesh.kube_lease).
HOLDER_ANNOTATION = "meshlab.io/holder"
HEARTBEAT_ANNOTATION = "meshlab.io/heartbeat"
LEASE_ANNOTATION = "meshlab.io/lease-seconds"
LEASE_ANNOTATIONS = (HOLDER_ANNOTATION, HEARTBEAT_ANNOTATION, LEASE_ANNOTATION)
# Where each route kind keeps its list of named routes.
ROUTE_FIELDS = {"VirtualService": "http", "HTTPRoute": "rules"}
MESHLAB_ANNOTATIONS = (
    EXPERIMENT_ANNOTATION,
    STEP_ANNOTATION,
    APPLIED_AT_ANNOTATION,
    ORIGINAL_ANNOTATION,
    *LEASE_ANNOTATIONS,
)


def is_owned_route(route: dict[str, Any], prefix: str) -> bool:
    """meshlab's routes are named exactly ``prefix`` or ``prefix-match-<i>``."""
    name = route.get("name")
    return isinstance(name, str) and (
        name == prefix or re.fullmatch(re.escape(prefix) + r"-match-\d+", name) is not None
    )


def route_field(obj: dict[str, Any]) -> str:
    """``http`` for a VirtualService, ``rules`` for an HTTPRoute."""
    return ROUTE_FIELDS.get(str(obj.get("kind")), "http")


def snapshot(virtual_service: dict[str, Any]) -> str:
    """The user-owned parts of a route object (labels, annotations, spec) as compact JSON."""
    metadata = virtual_service.get("metadata") or {}
    saved: dict[str, Any] = {"spec": virtual_service.get("spec", {})}
    for key in ("labels", "annotations"):
        if key in metadata:
            saved[key] = metadata[key]
    return json.dumps(saved, sort_keys=True, separators=(",", ":"))


def adopted_by(virtual_service: dict[str, Any]) -> str | None:
    """The experiment currently adopting this VirtualService, if any."""
    annotations = (virtual_service.get("metadata") or {}).get("annotations") or {}
    if ORIGINAL_ANNOTATION not in annotations:
        return None
    return str(annotations.get(EXPERIMENT_ANNOTATION, ""))


def adopt(
    current: dict[str, Any],
    routes: list[dict[str, Any]],
    prefix: str,
    stamp: dict[str, str],
) -> dict[str, Any]:
    """``current`` with meshlab's ``routes`` first, the user's own routes after, state annotated.

    The original is saved only the first time, so re-applying later steps keeps the true original.
    The result keeps ``metadata.resourceVersion`` so a PUT of it fails if the object changed since.
    """
    result = copy.deepcopy(current)
    metadata = result.setdefault("metadata", {})
    annotations = dict(metadata.get("annotations") or {})
    if ORIGINAL_ANNOTATION not in annotations:
        annotations[ORIGINAL_ANNOTATION] = snapshot(current)
    annotations.update(stamp)
    metadata["annotations"] = annotations
    spec = result.setdefault("spec", {})
    field = route_field(current)
    user_routes = [r for r in spec.get(field, []) if not is_owned_route(r, prefix)]
    spec[field] = [*copy.deepcopy(routes), *user_routes]
    return result


def restored(current: dict[str, Any], prefix: str) -> tuple[dict[str, Any], bool]:
    """``current`` as it was before adoption, and whether others changed it in the meantime.

    meshlab's routes and annotations are removed and the saved annotations put back. If nobody else
    edited the object, the result equals the saved original exactly; if someone did (a route added
    by a user during the experiment), their edits are kept rather than silently reverted, and the
    second value is True.
    """
    result = copy.deepcopy(current)
    metadata = result.setdefault("metadata", {})
    annotations = dict(metadata.get("annotations") or {})
    original = json.loads(annotations[ORIGINAL_ANNOTATION])
    original_annotations: dict[str, str] = original.get("annotations") or {}
    kept = {k: v for k, v in annotations.items() if k not in MESHLAB_ANNOTATIONS}
    kept.update({k: v for k, v in original_annotations.items() if k in MESHLAB_ANNOTATIONS})
    if kept or "annotations" in original:
        metadata["annotations"] = kept
    else:
        metadata.pop("annotations", None)
    spec = result.setdefault("spec", {})
    field = route_field(current)
    user_routes = [r for r in spec.get(field, []) if not is_owned_route(r, prefix)]
    if user_routes or field in original["spec"]:
        spec[field] = user_routes
    else:
        spec.pop(field, None)
    drifted = spec != original["spec"] or metadata.get("labels") != original.get("labels")
    if not drifted:
        result["spec"] = original["spec"]
    return result, drifted


def serves_host(virtual_service: dict[str, Any], host: str) -> bool:
    """Whether the object routes ``host`` (short name, FQDN form, or a wildcard).

    An HTTPRoute routes the mesh traffic of the Services among its ``parentRefs`` (GAMMA).
    """
    if virtual_service.get("kind") == "HTTPRoute":
        service = host.split(".")[0]
        return any(
            ref.get("kind") == "Service" and ref.get("group", "") == "" and ref["name"] == service
            for ref in (virtual_service.get("spec") or {}).get("parentRefs", [])
        )
    for candidate in (virtual_service.get("spec") or {}).get("hosts", []):
        name = str(candidate)
        if (
            name == "*"
            or name == host
            or name.startswith(host + ".")
            or host.startswith(name + ".")
        ):
            return True
        if name.startswith("*.") and host.endswith(name[1:]):
            return True
    return False
