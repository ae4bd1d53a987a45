"""Pure routing builders: experiment + step -> a mesh-neutral plan -> Istio or Gateway API objects."""

from meshlab.manifests.gateway import gateway_manifests, render_gateway
from meshlab.manifests.istio import (
    ARM_HEADER,
    Manifest,
    destination_rule,
    http_routes,
    manifests,
    owned_route_prefix,
    render_istio,
    resource_name,
    virtual_service,
)
from meshlab.manifests.render import render_step, step_filename, to_yaml
from meshlab.manifests.routing import RoutingPlan, routing_plan, step_plan
from meshlab.manifests.steps import (
    Step,
    all_steps,
    first_split,
    plan,
    promoted,
    rollback,
    steady_split,
    step_by_name,
)

__all__ = [
    "ARM_HEADER",
    "Manifest",
    "RoutingPlan",
    "Step",
    "all_steps",
    "destination_rule",
    "first_split",
    "gateway_manifests",
    "http_routes",
    "manifests",
    "owned_route_prefix",
    "plan",
    "promoted",
    "render_gateway",
    "render_istio",
    "render_step",
    "resource_name",
    "rollback",
    "routing_plan",
    "steady_split",
    "step_by_name",
    "step_filename",
    "step_plan",
    "to_yaml",
    "virtual_service",
]
