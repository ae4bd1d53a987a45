"""Kubernetes object metadata shared by every routing API meshlab renders (Istio, Gateway API).

meshlab's objects carry ``app.kubernetes.io/managed-by: meshlab``, the experiment's name as a label,
and the step they route as the annotation ``meshlab.io/step`` (read back by ``status``).
"""

from __future__ import annotations

from typing import Any

from meshlab.manifests.routing import RoutingPlan

Manifest = dict[str, Any]  # one Kubernetes object, at the file/wire edge
MANAGED_BY = {"app.kubernetes.io/managed-by": "meshlab"}
EXPERIMENT_LABEL = "meshlab.io/experiment"
STEP_ANNOTATION = "meshlab.io/step"


def object_metadata(plan: RoutingPlan, name: str | None = None, step: bool = True) -> Manifest:
    """``metadata`` of one of meshlab's objects (named ``plan.resource_name`` unless ``name``)."""
    out: Manifest = {
        "name": name or plan.resource_name,
        "namespace": plan.namespace,
        "labels": {**MANAGED_BY, EXPERIMENT_LABEL: plan.experiment},
    }
    if step:
        out["annotations"] = {STEP_ANNOTATION: plan.step}
    return out
