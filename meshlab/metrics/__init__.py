"""Telemetry backends: per-arm observations over time from Prometheus (Istio or local Envoy).

The controller builds a provider with :func:`from_experiment` and either wraps it with the load
source in :class:`PrometheusLiveSamples` (the controller's ``LiveSamples`` shape), or calls
``fetch()`` once per look through :func:`fetch_or_hold` (hold while Prometheus fails transiently,
abort after the grace period; failures are classified once in :mod:`meshlab.metrics.outages`) and feeds ``Window.samples`` to the statistics engine.
``Window.approximation`` goes in the report. Analyse the pseudo-samples with
:class:`BracketedComparison` (not the plain ``Comparison``): bucket placement alone can promote a
slower candidate.
"""

from meshlab.metrics.arms import arm_variables, from_experiment
from meshlab.metrics.base import (
    ArmTotals,
    MetricsProvider,
    MetricsUnavailableError,
    Outage,
    OutageStatus,
    Window,
    empty_samples,
    fetch_or_hold,
    source_label,
)
from meshlab.metrics.bracket import (
    DEFAULT_BUCKETS_MS,
    BracketedComparison,
    istio_buckets_annotation,
    lower_bounds,
)
from meshlab.metrics.histogram import APPROXIMATION, ArmWindow, Buckets
from meshlab.metrics.live import PrometheusLiveSamples, samples_to_rows
from meshlab.metrics.outages import classify
from meshlab.metrics.prometheus import PrometheusMetrics, Secret, load_token
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
from meshlab.stats.buckets import envoy_bucket_settings, geometric_buckets

__all__ = [
    "APPROXIMATION",
    "DEFAULT_BUCKETS_MS",
    "ENVOY",
    "ISTIO",
    "ISTIO_WORKLOAD",
    "TEMPLATE_SETS",
    "ArmTotals",
    "ArmWindow",
    "BracketedComparison",
    "Buckets",
    "MetricsProvider",
    "MetricsUnavailableError",
    "Outage",
    "OutageStatus",
    "PrometheusLiveSamples",
    "PrometheusMetrics",
    "QueryTemplate",
    "Secret",
    "TemplateError",
    "TemplateSet",
    "Window",
    "arm_variables",
    "classify",
    "empty_samples",
    "envoy_bucket_settings",
    "fetch_or_hold",
    "from_experiment",
    "geometric_buckets",
    "istio_buckets_annotation",
    "load_token",
    "lower_bounds",
    "samples_to_rows",
    "source_label",
    "template_set",
]
