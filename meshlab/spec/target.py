"""The ``target``, ``metrics`` and ``notifications`` sections: where the experiment runs and reports.

``target.kind`` picks the mesh backend (``local`` Envoy, or ``kubernetes``); ``target.routing`` the
routing API meshlab writes (``istio`` VirtualService, or ``gateway-api`` HTTPRoute); ``metrics.source``
picks where telemetry comes from (raw ``samples`` from the load generator, or ``prometheus``). The
names a field accepts are those of :mod:`meshlab.registry`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

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

LEASE_SECONDS = 30.0  # a holding run's Lease, unless target.lease.duration says otherwise
STEP_RETRY_SECONDS = 10.0  # how long a step retries an API server that fails transiently
ROLLBACK_DEADLINE_SECONDS = 45.0  # how long a rollback does (below the Job's grace period)


class LeaseTiming(StrictModel):
    """``target.lease``: how long a run's claim on the experiment lasts without a renewal.

    ``duration`` is the Lease's ``leaseDurationSeconds`` (whole seconds): a run that stops renewing
    (SIGKILL, OOM, a lost node) is presumed dead that long after its last renewal, and the next
    ``start`` takes over. ``renewEvery`` (default a third of it) is the heartbeat; at most half the
    duration, so one failed renewal never loses the claim.
    """

    duration: Duration = LEASE_SECONDS
    renew_every: Duration | None = None

    @model_validator(mode="after")
    def _coherent(self) -> LeaseTiming:
        if self.duration != int(self.duration):
            raise PydanticCustomError(
                "lease",
                "{d}s is not whole seconds (a Lease's leaseDurationSeconds is an integer); "
                "write e.g. '{r}s'",
                {
                    "d": f"{self.duration:g}",
                    "r": max(1, round(self.duration)),
                    "subpath": ".duration",
                },
            )
        if self.renew_every is not None and self.renew_every > self.duration / 2:
            raise PydanticCustomError(
                "lease",
                "{e}s is more than half of lease.duration ({d}s): one failed renewal would "
                "lose the lease; renew at most every {h}s (default a third: {t}s)",
                {
                    "e": f"{self.renew_every:g}",
                    "d": f"{self.duration:g}",
                    "h": f"{self.duration / 2:g}",
                    "t": f"{self.duration / 3:.3g}",
                    "subpath": ".renewEvery",
                },
            )
        return self

    @property
    def every(self) -> float:
        """Seconds between renewals."""
        return self.renew_every if self.renew_every is not None else self.duration / 3


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
    lease: LeaseTiming = LeaseTiming()
    step_retry: Duration = STEP_RETRY_SECONDS
    rollback_deadline: Duration = ROLLBACK_DEADLINE_SECONDS


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
