"""Istio rendering of a routing plan: ``RoutingPlan -> DestinationRule, VirtualService``.

Everything here is a function of its arguments (no I/O, no clock). The resources are
``networking.istio.io/v1``; they validate against Istio's CRD schema (tested for every strategy and
step) and follow its semantic rules: route weights sum to 100, one mirror is written ``mirror`` with
a ``mirrorPercentage``, several (a control arm beside the candidate) ``mirrors`` with a
``percentage`` each, never both. Every destination sets the response header ``x-meshlab-arm``.
Routes meshlab owns are named ``meshlab-<experiment>`` (plus ``-match-<i>`` for header-matched
ones), so an existing user-owned VirtualService can be adopted by replacing only these routes.
"""

from __future__ import annotations

from typing import Any

from meshlab.manifests.meta import MANAGED_BY, STEP_ANNOTATION, Manifest, object_metadata
from meshlab.manifests.routing import (
    ARM_HEADER,
    Arm,
    Backend,
    Condition,
    Match,
    RoutingPlan,
    Rule,
    resource_name,
    step_plan,
)
from meshlab.manifests.steps import Step
from meshlab.spec import Experiment
from meshlab.spec.base import format_duration

API_VERSION = "networking.istio.io/v1"

__all__ = [
    "API_VERSION",
    "ARM_HEADER",
    "MANAGED_BY",
    "STEP_ANNOTATION",
    "Manifest",
    "destination_rule",
    "http_routes",
    "manifests",
    "owned_route_prefix",
    "render_istio",
    "resource_name",
    "virtual_service",
]


def owned_route_prefix(experiment: Experiment) -> str:
    """Every HTTP route meshlab owns has a name starting with this."""
    return resource_name(experiment)


def _destination_rule(plan: RoutingPlan) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": "DestinationRule",
        "metadata": object_metadata(plan),
        "spec": {
            "host": plan.host,
            "subsets": [{"name": v.subset, "labels": v.label_map} for v in plan.versions],
        },
    }


def _target(plan: RoutingPlan, arm: Arm) -> dict[str, Any]:
    return {
        "host": plan.host,
        "subset": plan.version(arm).subset,
        "port": {"number": plan.port},
    }


def _destination(plan: RoutingPlan, backend: Backend, weighted: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"destination": _target(plan, backend.arm)}
    if weighted:
        out["weight"] = backend.weight
    out["headers"] = {"response": {"set": dict(backend.response_headers)}}
    return out


def _string_match(condition: Condition) -> dict[str, str]:
    return {condition.kind: condition.value}


def _match(match: Match) -> dict[str, object]:
    out: dict[str, object] = {}
    if match.headers:
        out["headers"] = {name: _string_match(c) for name, c in match.headers}
    if match.path is not None:
        out["uri"] = _string_match(match.path)
    return out


def _route_policy(plan: RoutingPlan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if plan.timeout is not None:
        out["timeout"] = format_duration(plan.timeout)
    if plan.retry is not None:
        retries: dict[str, Any] = {"attempts": plan.retry.attempts}
        if plan.retry.per_try_timeout is not None:
            retries["perTryTimeout"] = format_duration(plan.retry.per_try_timeout)
        if plan.retry.retry_on is not None:
            retries["retryOn"] = plan.retry.retry_on
        out["retries"] = retries
    return out


def _http_route(plan: RoutingPlan, rule: Rule) -> dict[str, Any]:
    route: dict[str, Any] = {"name": rule.name}
    if rule.matches:
        route["match"] = [_match(m) for m in rule.matches]
    weighted = len(rule.backends) > 1
    route["route"] = [_destination(plan, b, weighted) for b in rule.backends]
    route.update(_route_policy(plan))
    mirrors = [m for m in rule.mirrors if m.percent > 0]
    if len(mirrors) == 1:
        route["mirror"] = _target(plan, mirrors[0].arm)
        route["mirrorPercentage"] = {"value": float(mirrors[0].percent)}
    elif mirrors:
        route["mirrors"] = [
            {"destination": _target(plan, m.arm), "percentage": {"value": float(m.percent)}}
            for m in mirrors
        ]
    return route


def _virtual_service(plan: RoutingPlan) -> Manifest:
    spec: dict[str, Any] = {"hosts": [plan.host]}
    if plan.gateways:
        spec["gateways"] = list(plan.gateways)
    spec["http"] = [_http_route(plan, rule) for rule in plan.rules]
    return {
        "apiVersion": API_VERSION,
        "kind": "VirtualService",
        "metadata": object_metadata(plan),
        "spec": spec,
    }


def render_istio(plan: RoutingPlan) -> list[Manifest]:
    """DestinationRule first (subsets must exist before routes reference them), then the VirtualService."""
    return [_destination_rule(plan), _virtual_service(plan)]


def destination_rule(experiment: Experiment, step: Step) -> Manifest:
    """The DestinationRule declaring one subset per version, selected by its pod labels."""
    return _destination_rule(step_plan(experiment, step))


def http_routes(experiment: Experiment, step: Step) -> list[dict[str, Any]]:
    """meshlab's HTTP routes for a step, in match order (matched routes first)."""
    plan = step_plan(experiment, step)
    return [_http_route(plan, rule) for rule in plan.rules]


def virtual_service(experiment: Experiment, step: Step) -> Manifest:
    """The VirtualService routing the service's traffic for this step."""
    return _virtual_service(step_plan(experiment, step))


def manifests(experiment: Experiment, step: Step) -> list[Manifest]:
    """The Istio objects of a step: DestinationRule, then VirtualService."""
    return render_istio(step_plan(experiment, step))
