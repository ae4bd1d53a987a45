"""Shared fixtures: paths of the repo, the example spec, and Istio's CRD file beside the repo."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "fraud-v2.yaml"


@pytest.fixture
def example_data() -> dict[str, Any]:
    """The reference experiment of the spec issue, as parsed YAML (a fresh copy per test)."""
    return copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
