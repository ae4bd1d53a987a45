"""Pure checks and edits of the objects meshlab writes to a cluster; no I/O.

What a step may contain, the annotations stamped on it, the refusal to take over an object meshlab
did not create, what to re-apply to get a stored object back, and whether a VirtualService sends
anything beyond the baseline (the check a rollback must pass before meshlab says it rolled back).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meshlab.errors import ConflictError, MeshError
from meshlab.manifests import Manifest
from meshlab.manifests.istio import MANAGED_BY
from meshlab.mesh.kube_adopt import APPLIED_AT_ANNOTATION
from meshlab.mesh.kube_client import API_VERSION
from meshlab.mesh.kube_lease import parse_time

DR, VS = "DestinationRule", "VirtualService"


def check_step(
    documents: Sequence[Manifest], namespace: str, resource: str
) -> tuple[Manifest, Manifest]:
    """The step's DestinationRule and VirtualService, checked to be the objects meshlab may write."""
    by_kind = {doc.get("kind"): doc for doc in documents}
    if len(documents) != 2 or set(by_kind) != {DR, VS}:
        raise MeshError("a step is exactly one DestinationRule and one VirtualService")
    for doc in documents:
        metadata = doc.get("metadata") or {}
        if doc.get("apiVersion") != API_VERSION:
            raise MeshError(f"{doc['kind']}: apiVersion must be {API_VERSION}")
        if metadata.get("namespace", namespace) != namespace:
            raise MeshError(
                f"{doc['kind']} {metadata.get('name')}: namespace {metadata.get('namespace')} "
                f"differs from the experiment's {namespace}"
            )
        if metadata.get("name") != resource:
            raise MeshError(f"{doc['kind']}: meshlab only writes objects named {resource}")
    return by_kind[DR], by_kind[VS]


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
        hint = " or adopt it with spec.target.adoptVirtualService" if kind == VS else ""
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
            f"VirtualService {name}: annotation {APPLIED_AT_ANNOTATION}={value!r} is not a time; "
            "re-apply the step"
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
