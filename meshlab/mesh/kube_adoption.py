"""Adopting a user's VirtualService in the cluster: read-modify-write with its resourceVersion.

The pure edits (insert meshlab's routes, take them out, save and restore the original) are in
:mod:`meshlab.mesh.kube_adopt`; this module reads the object, applies an edit and PUTs it with the
resourceVersion it read, starting over on 409 Conflict a bounded number of times, so a concurrent
writer (a GitOps controller, kubectl, meshlab's own heartbeat) is never overwritten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from meshlab.errors import ConflictError, MeshError
from meshlab.manifests import owned_route_prefix
from meshlab.mesh.kube_adopt import adopt, adopted_by, restored, serves_host
from meshlab.mesh.kube_client import IstioObjects
from meshlab.spec import Experiment

log = logging.getLogger(__name__)
VS = "VirtualService"


def adopt_routes(
    objects: IstioObjects,
    name: str,
    experiment: Experiment,
    routes: list[dict[str, Any]],
    stamp: dict[str, str],
    *,
    retries: int,
) -> dict[str, Any]:
    """Put meshlab's ``routes`` first in the user's VirtualService ``name``; the stored object."""
    namespace, prefix = objects.namespace, owned_route_prefix(experiment)

    def change(current: dict[str, Any]) -> dict[str, Any] | None:
        owner = adopted_by(current)
        if owner not in (None, experiment.metadata.name):
            raise ConflictError(
                f"VirtualService {namespace}/{name} is adopted by experiment {owner!r}; "
                "roll that experiment back before adopting it again"
            )
        host = experiment.spec.service.host
        if not serves_host(current, host):
            raise MeshError(
                f"spec.target.adoptVirtualService: VirtualService {namespace}/{name} does "
                f"not route host {host!r}; adopt the VirtualService whose hosts include it"
            )
        return adopt(current, routes, prefix, stamp)

    return read_modify_write(objects, name, change, missing_ok=False, retries=retries)


def restore_adopted(
    objects: IstioObjects, name: str, experiment: Experiment, *, retries: int
) -> None:
    """Take meshlab's routes and annotations out of ``name`` (a no-op if none are left)."""
    namespace, prefix = objects.namespace, owned_route_prefix(experiment)

    def change(current: dict[str, Any]) -> dict[str, Any] | None:
        owner = adopted_by(current)
        if owner is None:
            return None  # nothing of meshlab's left: already restored
        if owner != experiment.metadata.name:
            raise ConflictError(
                f"VirtualService {namespace}/{name} is adopted by experiment {owner!r}, "
                f"not {experiment.metadata.name!r}; meshlab leaves it alone"
            )
        result, drifted = restored(current, prefix)
        if drifted:
            log.warning(
                "VirtualService %s/%s was edited during the experiment; meshlab removed its own "
                "routes and kept those edits instead of restoring the saved original",
                namespace,
                name,
            )
        return result

    read_modify_write(objects, name, change, missing_ok=True, retries=retries)


def read_modify_write(
    objects: IstioObjects,
    name: str,
    change: Callable[[dict[str, Any]], dict[str, Any] | None],
    *,
    missing_ok: bool,
    retries: int,
) -> dict[str, Any]:
    """GET, edit, PUT with the resourceVersion read; on 409 start over (bounded)."""
    namespace, attempts = objects.namespace, retries + 1
    for attempt in range(1, attempts + 1):
        current = objects.get(VS, name)
        if current is None:
            if missing_ok:
                return {}
            raise MeshError(
                f"spec.target.adoptVirtualService: VirtualService {namespace}/{name} does "
                "not exist; create it first or remove adoptVirtualService"
            )
        desired = change(current)
        if desired is None:
            return current
        try:
            return objects.replace(desired)
        except ConflictError:
            log.info(
                "VirtualService %s/%s changed meanwhile (409), attempt %d/%d",
                namespace,
                name,
                attempt,
                attempts,
            )
    raise ConflictError(
        f"VirtualService {namespace}/{name} kept changing: {attempts} attempts met "
        "409 Conflict; stop the other writer (GitOps controller, kubectl) and re-run"
    )
