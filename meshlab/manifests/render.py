"""Rendering a step's objects in the experiment's routing API, and as the YAML ``kubectl apply`` reads."""

from __future__ import annotations

from collections.abc import Iterable

import yaml

from meshlab.manifests.meta import Manifest
from meshlab.manifests.routing import routing_plan
from meshlab.manifests.steps import Step
from meshlab.registry import routing_renderer
from meshlab.spec import Experiment


def render_step(experiment: Experiment, step: Step, routing: str | None = None) -> list[Manifest]:
    """The objects of ``step`` in ``routing`` (default: ``spec.target.routing``), in apply order.

    With ``spec.control`` the plan has the control arm (its subset, its weight, its mirror).
    """
    renderer = routing_renderer(routing or experiment.spec.target.routing)
    return renderer(routing_plan(experiment, step, experiment.spec.control_version))


def to_yaml(documents: Iterable[Manifest]) -> str:
    """Multi-document YAML, keys in builder order, each document opened by ``---``."""
    return "".join(
        "---\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
        for doc in documents
    )


def step_filename(index: int, step_name: str) -> str:
    """``01-step-1.yaml`` ... ``06-promoted.yaml``: sorted in the order steps are applied."""
    label = f"step-{step_name}" if step_name.isdigit() else step_name
    return f"{index:02d}-{label}.yaml"
