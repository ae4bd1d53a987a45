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

from typing import Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from meshlab.spec.base import DnsLabel, Duration, StrictModel

TemplateSetName = Literal["istio", "istio-workload", "envoy"]


class ArmNames(StrictModel):
    """A Kubernetes object name per arm (Deployments, InferenceServices)."""

    baseline: DnsLabel
    candidate: DnsLabel

    @model_validator(mode="after")
    def _distinct(self) -> ArmNames:
        if self.baseline == self.candidate:
            raise PydanticCustomError(
                "arm_names", "baseline and candidate name the same object; name each version's own",
                {"subpath": ".candidate"},
            )  # fmt: skip
        return self


class PrometheusQueries(StrictModel):
    """Which query templates select the arms, and how to trust the server."""

    # None: istio for target.kind kubernetes, envoy for the local mesh.
    templates: TemplateSetName | None = None
    # istio-workload selects arms by destination_workload: the Deployment of each version.
    workloads: ArmNames | None = None
    ca_file: str | None = None  # PEM bundle to verify the server with (verifyTls stays on)

    @model_validator(mode="after")
    def _workloads_when_needed(self) -> PrometheusQueries:
        if self.templates == "istio-workload" and self.workloads is None:
            raise PydanticCustomError(
                "queries",
                "templates istio-workload needs workloads: {baseline: <deployment>, "
                "candidate: <deployment>}",
                {"subpath": ".workloads"},
            )
        return self


class CollectorSpec(StrictModel):
    """The endpoint KServe's payload logger posts to, and how to reach it."""

    listen: str = "0.0.0.0"  # in a pod the collector must accept connections from the model pods
    port: int = Field(default=8080, ge=0, le=65535)
    url: str | None = None  # the URL the model pods post to; required to render logger configs
    inference_services: ArmNames | None = None
    ttl: Duration = 60.0  # unmatched halves are dropped after this long
    max_pending: int = Field(default=100_000, ge=1)
    release: Literal["pairs", "mirrored"] = "mirrored"
