"""The ``target``, ``metrics`` and ``notifications`` sections: where the experiment runs and reports.

``target.kind`` picks the mesh backend (``local`` Envoy, or ``kubernetes``); ``target.routing`` the
routing API meshlab writes (``istio`` VirtualService, or ``gateway-api`` HTTPRoute); ``metrics.source``
picks where telemetry comes from (raw ``samples`` from the load generator, or ``prometheus``). The
names a field accepts are those of :mod:`meshlab.registry`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from meshlab.registry import ROUTING, Registry
from meshlab.spec.base import Duration, Host, StrictModel
from meshlab.spec.metrics import CollectorSpec, PrometheusQueries


def _registered(registry: Registry) -> AfterValidator:
    def check(name: str) -> str:
        if name not in registry.entries:
            raise ValueError(registry.unknown(name))
        return name

    return AfterValidator(check)


RoutingApi = Annotated[str, _registered(ROUTING)]


class Target(StrictModel):
    """Which mesh the routes are applied to, and how meshlab talks to a Kubernetes API server.

    The namespace is the experiment's ``metadata.namespace``. With ``kind: kubernetes`` and neither
    ``kubeconfig`` nor ``context`` set, meshlab uses the in-cluster ServiceAccount when it runs in a
    pod (``KUBERNETES_SERVICE_HOST`` set), else the default kubeconfig (``$KUBECONFIG`` or
    ``~/.kube/config``) and its current context. ``adoptVirtualService`` names an existing,
    user-owned VirtualService whose routes meshlab prepends its own named routes to (and restores on
    rollback) instead of creating ``meshlab-<experiment>``; ``adoptHTTPRoute`` does the same to a
    user's HTTPRoute with ``routing: gateway-api`` (meshlab's named rules first). ``routing`` is the
    API of the routes meshlab writes: ``istio`` (VirtualService + DestinationRule) or
    ``gateway-api`` (an HTTPRoute whose parent is the Service, the GAMMA profile, with one backend
    Service per version); the local mesh routes either the same way.
    """

    kind: Literal["local", "kubernetes"] = "local"
    routing: RoutingApi = "istio"
    kubeconfig: str | None = None
    context: str | None = None
    field_manager: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[ -~]+$")] = (
        "meshlab"
    )
    adopt_virtual_service: Host | None = None
    adopt_http_route: Host | None = Field(default=None, alias="adoptHTTPRoute")
    request_timeout: Duration = 10.0
    conflict_retries: Annotated[int, Field(ge=0, le=20)] = 5


class Prometheus(StrictModel):
    """A Prometheus server with Istio's (or the local Envoy's) metrics."""

    url: str = "http://127.0.0.1:9090"
    token_env: str | None = None
    token_file: str | None = None
    verify_tls: bool = True
    grace_period: Duration = 60.0  # hold this long while Prometheus fails transiently, then abort
    interval: Duration = 5.0
    # One look's queries (two per arm) must all answer within this; a frozen Prometheus then
    # delays the abort by at most one queryTimeout past the grace period.
    query_timeout: Duration = 5.0
    queries: PrometheusQueries = PrometheusQueries()


class MetricsSource(StrictModel):
    """Where the statistics get their data."""

    source: Literal["samples", "prometheus", "collector"] = "samples"
    prometheus: Prometheus = Prometheus()
    collector: CollectorSpec | None = None


class Webhook(StrictModel):
    """A URL notified on every state change of the experiment."""

    url: str
    format: Literal["json", "slack"] = "json"


class Notifications(StrictModel):
    """Webhooks called on every state change."""

    webhooks: list[Webhook] = Field(default_factory=list)
