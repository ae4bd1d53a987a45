"""Which Prometheus series are the stable and the canary arm, as each controller names them.

A :class:`Target` is a template set and the two arms' selectors, frozen when a session starts.
Template sets are those of :mod:`meshlab.metrics.templates` plus ``istio-service``, which tells the
arms apart by the Kubernetes Service the caller addressed (Argo Rollouts' ``stableService`` and
``canaryService``). It reads the *source* side (``reporter="source"``), because only the client's
sidecar names the Service it routed to; recent Istio (istio/istio#49256) gives every pod of a
Rollout the Rollout's workload name, so ``destination_workload`` cannot tell Argo's two ReplicaSets apart.

Defaults per controller: Flagger's primary/canary Deployments (``<name>-primary`` / ``<name>``)
with ``istio-workload``; Argo's stable/canary Services with ``istio-service``. ``envoy`` selects
an upstream cluster of meshlab's local mesh (what the tests drive).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshlab.errors import ConfigError
from meshlab.metrics import TEMPLATE_SETS, QueryTemplate, TemplateSet
from meshlab.metrics.templates import promql_regex_literal

ISTIO_SERVICE = TemplateSet(
    name="istio-service",
    requests=QueryTemplate(
        "istio-service.requests",
        'istio_requests_total{reporter="source", destination_service_namespace="$namespace", '
        'destination_service_name="$arm"}',
    ),
    latency=QueryTemplate(
        "istio-service.latency",
        'istio_request_duration_milliseconds_bucket{reporter="source", '
        'destination_service_namespace="$namespace", destination_service_name="$arm"}',
    ),
    status_label="response_code",
)

SERVE_TEMPLATE_SETS: Mapping[str, TemplateSet] = {
    **TEMPLATE_SETS,
    ISTIO_SERVICE.name: ISTIO_SERVICE,
}


def serve_template_set(name: str, field: str = "templates") -> TemplateSet:
    """The template set called ``name``; an unknown name lists the known ones."""
    try:
        return SERVE_TEMPLATE_SETS[name]
    except KeyError:
        raise ConfigError(
            f"{field}: unknown template set {name!r}; use one of {', '.join(SERVE_TEMPLATE_SETS)}"
        ) from None


@dataclass(frozen=True)
class Target:
    """The series of both arms: a template set and each arm's template variables."""

    templates: str
    baseline: tuple[tuple[str, str], ...]
    candidate: tuple[tuple[str, str], ...]

    def arms(self) -> dict[str, dict[str, str]]:
        """``{"baseline": {...}, "candidate": {...}}`` as :class:`PrometheusMetrics` takes them."""
        return {"baseline": dict(self.baseline), "candidate": dict(self.candidate)}

    def to_json(self) -> dict[str, Any]:
        return {"templates": self.templates, **self.arms()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Target:
        return cls(
            str(data["templates"]),
            tuple(sorted((str(k), str(v)) for k, v in data["baseline"].items())),
            tuple(sorted((str(k), str(v)) for k, v in data["candidate"].items())),
        )


def _service_regex(services: list[str]) -> str:
    """A regular expression matching exactly one of ``services`` (RE2, grouped)."""
    return "(?:" + "|".join(promql_regex_literal(s) for s in services) + ")"


def build_target(
    templates: str,
    *,
    baseline: str,
    candidate: str,
    namespace: str,
    services: list[str],
) -> Target:
    """The :class:`Target` selecting ``baseline``/``candidate`` (workload, version, Service or
    Envoy cluster, depending on ``templates``) in ``namespace``."""
    tset = serve_template_set(templates)
    if not baseline or not candidate:
        raise ConfigError("baseline/candidate: name both arms (workload, version or Service)")
    if baseline == candidate:
        raise ConfigError(
            f"baseline/candidate: both arms are {baseline!r}; they must select different series"
        )
    common: dict[str, str] = {}
    if "namespace" in tset.variables:
        if not namespace:
            raise ConfigError(f"namespace: template set {templates!r} needs the namespace")
        common["namespace"] = namespace
    if "service_regex" in tset.variables:
        if not services:
            raise ConfigError(f"service: template set {templates!r} needs the Service name(s)")
        common["service_regex"] = _service_regex(services)

    def arm(value: str) -> tuple[tuple[str, str], ...]:
        return tuple(sorted({**common, "arm": value}.items()))

    target = Target(templates, arm(baseline), arm(candidate))
    for values in target.arms().values():
        tset.render(values)  # strict: a missing or unknown variable fails here, not at a look
    return target
