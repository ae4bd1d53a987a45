"""Spec fields of the Prometheus backend and the shadow-prediction collector (``spec.metrics``).

Attached by ``meshlab.spec.target`` as::

    class Prometheus(StrictModel):
        ...
        queries: PrometheusQueries = PrometheusQueries()

    class MetricsSource(StrictModel):
        ...
        collector: CollectorSpec | None = None

YAML::

    metrics:
      source: prometheus
      prometheus:
        url: https://prometheus.monitoring:9090
        tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token
        queries: {templates: istio, caFile: /etc/ssl/prometheus-ca.pem}
      collector:
        url: http://meshlab-collector.models.svc:8080   # how the model pods reach it
        inferenceServices: {baseline: fraud-v1, candidate: fraud-v2}
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from meshlab.spec.base import DnsLabel, Duration, StrictModel

TemplateSetName = Literal[
    "istio", "istio-workload", "istio-waypoint", "istio-waypoint-workload", "envoy"
]


class ArmNames(StrictModel):
    """A Kubernetes object name per arm (Deployments, InferenceServices)."""

    baseline: DnsLabel
    candidate: DnsLabel
    control: DnsLabel | None = None  # the control arm's object (with spec.control)

    @model_validator(mode="after")
    def _distinct(self) -> ArmNames:
        if self.baseline == self.candidate:
            raise PydanticCustomError(
                "arm_names", "baseline and candidate name the same object; name each version's own",
                {"subpath": ".candidate"},
            )  # fmt: skip
        return self


# Template sets that tell the arms apart by destination_workload (each version's Deployment).
BY_WORKLOAD = frozenset({"istio-workload", "istio-waypoint-workload"})


class PrometheusQueries(StrictModel):
    """Which query templates select the arms, and how to trust the server."""

    # None: istio for target.kind kubernetes, envoy for the local mesh.
    templates: TemplateSetName | None = None
    # istio-workload selects arms by destination_workload: the Deployment of each version.
    workloads: ArmNames | None = None
    ca_file: str | None = None  # PEM bundle to verify the server with (verifyTls stays on)

    @model_validator(mode="after")
    def _workloads_when_needed(self) -> PrometheusQueries:
        if self.templates in BY_WORKLOAD and self.workloads is None:
            raise PydanticCustomError(
                "queries",
                "templates {t} needs workloads: {{baseline: <deployment>, "
                "candidate: <deployment>}}",
                {"t": self.templates, "subpath": ".workloads"},
            )
        return self


def is_loopback(host: str) -> bool:
    """True when ``host`` is only reachable from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: whatever it resolves to may be reachable from outside


_BYTES = re.compile(r"^(?P<num>\d+)(?P<unit>|Ki|Mi|Gi)$")
_BYTE_UNITS = {"": 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}


def parse_bytes(value: Any) -> Any:
    """``4194304``, ``"512Ki"``, ``"64Mi"`` or ``"1Gi"`` as a number of bytes."""
    if isinstance(value, str):
        match = _BYTES.match(value.strip())
        if match is None:
            raise ValueError(f"{value!r} is not a size; give bytes or <n>Ki, <n>Mi, <n>Gi")
        return int(match["num"]) * _BYTE_UNITS[match["unit"]]
    return value


ByteSize = Annotated[int, BeforeValidator(parse_bytes)]


class CollectorTls(StrictModel):
    """TLS for the collector; with ``clientCaFile`` every client must present a certificate (mTLS)."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None


class CollectorSpec(StrictModel):
    """The endpoint KServe's payload logger posts to, how to reach it, and what it will accept.

    It binds loopback unless ``listen`` says otherwise; beyond loopback a bearer token
    (``tokenEnv`` or ``tokenFile``) is required. Memory is bounded by ``memoryBudget`` (pending
    halves and rows not yet taken) plus ``bufferBudget`` (bodies being received); every request
    must arrive whole within ``requestTimeout``.
    """

    listen: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    url: str | None = None  # the URL the model pods post to; required to render logger configs
    inference_services: ArmNames | None = None
    # Service accounts of the InferenceServices' pods: the rendered AuthorizationPolicy admits them.
    model_service_accounts: list[DnsLabel] = Field(
        default_factory=lambda: ["default"], min_length=1
    )
    token_env: str | None = None
    token_file: str | None = None
    tls: CollectorTls | None = None
    ttl: Duration = 60.0  # unmatched halves are dropped after this long
    max_pending: int = Field(default=100_000, ge=1)
    release: Literal["pairs", "mirrored"] = "mirrored"
    max_body: ByteSize = Field(default=4 * 1024**2, ge=1024)
    memory_budget: ByteSize = Field(default=64 * 1024**2, ge=1024**2)
    buffer_budget: ByteSize = Field(default=32 * 1024**2, ge=1024)
    request_timeout: Duration = 10.0
    max_connections: int = Field(default=256, ge=1, le=10_000)
    workers: int = Field(default=2, ge=1, le=32)
    max_json_depth: int = Field(default=64, ge=2, le=1000)

    @model_validator(mode="after")
    def _safe_to_expose(self) -> CollectorSpec:
        if not is_loopback(self.listen) and not (self.token_env or self.token_file):
            raise ValueError(
                f"listen {self.listen} is beyond loopback, so a bearer token is required; set "
                "tokenEnv or tokenFile (or listen: 127.0.0.1)"
            )
        if self.buffer_budget < self.max_body:
            raise ValueError(
                "bufferBudget must be at least maxBody, or no body of maxBody bytes could be read"
            )
        if self.request_timeout <= 0:
            raise ValueError("requestTimeout must be > 0")
        return self
