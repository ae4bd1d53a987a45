"""Rendering manifests as the multi-document YAML ``kubectl apply -f -`` expects."""

from __future__ import annotations

from collections.abc import Iterable

import yaml

from meshlab.manifests.istio import Manifest


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
