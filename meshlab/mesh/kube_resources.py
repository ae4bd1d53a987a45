"""Where the Kubernetes API serves each kind meshlab writes, and the RBAC verbs it uses on them.

:data:`RESOURCES` lists the kinds of both routing APIs (Istio's DestinationRule and
VirtualService, the Gateway API's HTTPRoute, core Services) and the run's ``coordination.k8s.io``
Lease (:mod:`meshlab.mesh.kube_runlease`); a kind a new renderer emits is
addressed where its ``apiVersion`` says (:func:`resource_of`), so adding a routing API needs no
change here. :data:`VERBS` is what ``istio_manifests/rbac/role.yaml`` grants, exactly (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GROUP = "networking.istio.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class Resource:
    """Where the API serves one kind: group ("" for the core API), version, plural."""

    group: str
    version: str
    plural: str
    install: str  # what to install when the server does not serve it

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``plural.group`` as RBAC messages and ``kubectl`` name it (``services`` for core)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


_ISTIO = "install Istio's CRDs (e.g. `istioctl install`) or point target.context at a cluster "
_GATEWAY = "install the Gateway API CRDs (standard channel >= v1.2) or point target.context at one"
RESOURCES = {
    "VirtualService": Resource(GROUP, VERSION, "virtualservices", _ISTIO + "with Istio >= 1.22"),
    "DestinationRule": Resource(GROUP, VERSION, "destinationrules", _ISTIO + "with Istio >= 1.22"),
    "HTTPRoute": Resource("gateway.networking.k8s.io", "v1", "httproutes", _GATEWAY),
    "Service": Resource("", "v1", "services", "check target.context"),
    "Lease": Resource(
        "coordination.k8s.io", "v1", "leases", "use Kubernetes >= 1.14 or fix target.context"
    ),
}
PLURALS = {kind: r.plural for kind, r in RESOURCES.items()}
# The verbs meshlab uses, per resource; istio_manifests/rbac/role.yaml grants exactly these.
# Server-side apply of a new object needs "create" as well as "patch"; "update" is the PUT of an
# adopted route object; "delete" is cleanup (and undoing what a failed step created). Services:
# the parent Service is read ("get") for its selector and port; backend Services are meshlab's own.
# Leases: the run's claim is read, created, renewed and taken over by PUT with its resourceVersion
# ("update"), and deleted (with that precondition) when the run lets go.
VERBS = {
    "destinationrules": ("get", "create", "patch", "delete"),
    "virtualservices": ("get", "create", "patch", "update", "delete"),
    "httproutes": ("get", "create", "patch", "update", "delete"),
    "services": ("get", "create", "patch", "delete"),
    "leases": ("get", "create", "update", "delete"),
}
GROUPS = {r.plural: r.group for r in RESOURCES.values()}


def resource_of(manifest: dict[str, Any]) -> Resource:
    """Where the API serves ``manifest``: a known kind, or one learnt from its apiVersion.

    A routing API's renderer may emit a kind this table does not list (a new route type): its
    group and version come from ``apiVersion`` and its plural is Kubernetes' convention, the
    lowercased kind plus ``s`` (``HTTPRoute`` -> ``httproutes``, ``GRPCRoute`` -> ``grpcroutes``).
    """
    kind, api_version = str(manifest.get("kind")), str(manifest.get("apiVersion"))
    known = RESOURCES.get(kind)
    if known is not None and known.api_version == api_version:
        return known
    group, _, version = api_version.rpartition("/")
    return Resource(group, version, kind.lower() + "s", f"install the CRDs of {api_version}")
