"""Pure manifest builders: experiment + step -> Istio resources, and their YAML rendering."""

from meshlab.manifests.istio import (
    ARM_HEADER,
    Manifest,
    destination_rule,
    http_routes,
    manifests,
    owned_route_prefix,
    resource_name,
    virtual_service,
)
from meshlab.manifests.render import step_filename, to_yaml
from meshlab.manifests.steps import Step, all_steps, plan, promoted, rollback, step_by_name

__all__ = [
    "ARM_HEADER",
    "Manifest",
    "Step",
    "all_steps",
    "destination_rule",
    "http_routes",
    "manifests",
    "owned_route_prefix",
    "plan",
    "promoted",
    "resource_name",
    "rollback",
    "step_by_name",
    "step_filename",
    "to_yaml",
    "virtual_service",
]
