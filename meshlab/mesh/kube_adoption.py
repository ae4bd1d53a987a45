"""Adopting a user's route object (VirtualService or HTTPRoute): read-modify-write with its version.

The pure edits (insert meshlab's routes, take them out, save and restore the original) are in
:mod:`meshlab.mesh.kube_adopt`; this module reads the object, applies an edit and PUTs it with the
resourceVersion it read, starting over on 409 Conflict a bounded number of times, so a concurrent
writer (a GitOps controller, kubectl, meshlab's own heartbeat) is never overwritten.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from meshlab.errors import ConfigError, ConflictError, MeshError
from meshlab.manifests import owned_route_prefix
from meshlab.mesh.kube_adopt import adopt, adopted_by, restored, serves_host
from meshlab.mesh.kube_client import KubeObjects
from meshlab.spec import Experiment

log = logging.getLogger(__name__)
VS = "VirtualService"
ADOPT_FIELD = {"VirtualService": "adoptVirtualService", "HTTPRoute": "adoptHTTPRoute"}


def adopt_routes(
    objects: KubeObjects,
    name: str,
    experiment: Experiment,
    routes: list[dict[str, Any]],
    stamp: dict[str, str],
    *,
    retries: int,
    kind: str = VS,
) -> dict[str, Any]:
    """Put meshlab's ``routes`` first in the user's ``kind`` ``name``; the stored object."""
    namespace, prefix = objects.namespace, owned_route_prefix(experiment)

    def change(current: dict[str, Any]) -> dict[str, Any] | None:
        owner = adopted_by(current)
        if owner not in (None, experiment.metadata.name):
            raise ConflictError(
                f"{kind} {namespace}/{name} is adopted by experiment {owner!r}; "
                "roll that experiment back before adopting it again"
            )
        host = experiment.spec.service.host
        if not serves_host(current, host):
            where = "hosts" if kind == VS else "parentRefs"
            raise MeshError(
                f"spec.target.{ADOPT_FIELD[kind]}: {kind} {namespace}/{name} does "
                f"not route host {host!r}; adopt the {kind} whose {where} include it"
            )
        return adopt(current, routes, prefix, stamp)

    return read_modify_write(objects, name, change, missing_ok=False, retries=retries, kind=kind)


def restore_adopted(
    objects: KubeObjects, name: str, experiment: Experiment, *, retries: int, kind: str = VS
) -> None:
    """Take meshlab's routes and annotations out of ``name`` (a no-op if none are left)."""
    namespace, prefix = objects.namespace, owned_route_prefix(experiment)

    def change(current: dict[str, Any]) -> dict[str, Any] | None:
        owner = adopted_by(current)
        if owner is None:
            return None  # nothing of meshlab's left: already restored
        if owner != experiment.metadata.name:
            raise ConflictError(
                f"{kind} {namespace}/{name} is adopted by experiment {owner!r}, "
                f"not {experiment.metadata.name!r}; meshlab leaves it alone"
            )
        result, drifted = restored(current, prefix)
        if drifted:
            log.warning(
                "%s %s/%s was edited during the experiment; meshlab removed its own "
                "routes and kept those edits instead of restoring the saved original",
                kind,
                namespace,
                name,
            )
        return result

    read_modify_write(objects, name, change, missing_ok=True, retries=retries, kind=kind)


def read_modify_write(
    objects: KubeObjects,
    name: str,
    change: Callable[[dict[str, Any]], dict[str, Any] | None],
    *,
    missing_ok: bool,
    retries: int,
    kind: str = VS,
) -> dict[str, Any]:
    """GET, edit, PUT with the resourceVersion read; on 409 start over (bounded)."""
    namespace, attempts = objects.namespace, retries + 1
    for attempt in range(1, attempts + 1):
        current = objects.get(kind, name)
        if current is None:
            if missing_ok:
                return {}
            raise MeshError(
                f"spec.target.{ADOPT_FIELD[kind]}: {kind} {namespace}/{name} does "
                f"not exist; create it first or remove {ADOPT_FIELD[kind]}"
            )
        desired = change(current)
        if desired is None:
            return current
        try:
            return objects.replace(desired)
        except ConflictError:
            log.info(
                "%s %s/%s changed meanwhile (409), attempt %d/%d",
                kind,
                namespace,
                name,
                attempt,
                attempts,
            )
    raise ConflictError(
        f"{kind} {namespace}/{name} kept changing: {attempts} attempts met "
        "409 Conflict; stop the other writer (GitOps controller, kubectl) and re-run"
    )


def adopted_name(routing: str, route_kind: str, asked: dict[str, str | None]) -> str | None:
    """The route object to adopt (``asked``: kind -> the spec's name), checked against the API.

    ``adoptVirtualService`` with a routing API that writes HTTPRoutes (or the reverse) is a
    :class:`~meshlab.errors.ConfigError` naming the field to use instead.
    """
    for kind, name in asked.items():
        if name is not None and kind != route_kind:
            raise ConfigError(
                f"spec.target.{ADOPT_FIELD[kind]}: target.routing {routing} writes "
                f"{route_kind}s, not {kind}s; adopt one with "
                f"spec.target.{ADOPT_FIELD.get(route_kind, 'adopt')} instead"
            )
    return asked.get(route_kind)
