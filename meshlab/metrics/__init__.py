"""Telemetry backends: per-arm observations over time from Prometheus (Istio or local Envoy).

The controller builds a provider with :func:`from_experiment`, calls ``fetch()`` once per look
through :func:`fetch_or_hold` (hold while Prometheus is unreachable, abort after the grace period),
and feeds ``Window.samples`` to the statistics engine; ``Window.approximation`` goes in the report.
"""

from meshlab.metrics.base import (
    ArmTotals,
    MetricsProvider,
    MetricsUnavailableError,
    Outage,
    Window,
    empty_samples,
    fetch_or_hold,
)
from meshlab.metrics.histogram import APPROXIMATION, ArmWindow, Buckets
from meshlab.metrics.prometheus import (
    PrometheusMetrics,
    Secret,
    arm_variables,
    from_experiment,
    load_token,
)
from meshlab.metrics.templates import (
    ENVOY,
    ISTIO,
    ISTIO_WORKLOAD,
    TEMPLATE_SETS,
    QueryTemplate,
    TemplateError,
    TemplateSet,
    template_set,
)

__all__ = [
    "APPROXIMATION",
    "ENVOY",
    "ISTIO",
    "ISTIO_WORKLOAD",
    "TEMPLATE_SETS",
    "ArmTotals",
    "ArmWindow",
    "Buckets",
    "MetricsProvider",
    "MetricsUnavailableError",
    "Outage",
    "PrometheusMetrics",
    "QueryTemplate",
    "Secret",
    "TemplateError",
    "TemplateSet",
    "Window",
    "arm_variables",
    "empty_samples",
    "fetch_or_hold",
    "from_experiment",
    "load_token",
    "template_set",
]
