"""``metrics.source: prometheus`` end to end: a real Prometheus scraping the local mesh's Envoy.

The statistics then see only what Prometheus stores (counters and 2%-wide latency buckets), not the
load generator's raw rows. On the demo's good and bad candidates the verdicts must be the same as
with raw samples (test_end_to_end.py checks those): promote and abort.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.experiment.prometheus_support import (
    local_prometheus,
    prometheus_spec,
    stop_everything,
)
from tests.experiment.test_end_to_end import Meshlab

pytestmark = [pytest.mark.envoy, pytest.mark.slow]


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """Prometheus on loopback scraping the (future) outbound Envoy admin port every second."""
    with local_prometheus(tmp_path) as (url, envoy_admin, _):
        yield url, envoy_admin


@pytest.mark.parametrize(
    ("demo", "expected"), [("canary-good.yaml", "promote"), ("canary-bad.yaml", "abort")]
)
def test_prometheus_source_reaches_the_raw_sample_verdict(
    tmp_path: Path, prometheus: tuple[str, int], demo: str, expected: str
) -> None:
    url, admin = prometheus
    spec = prometheus_spec(REPO / "examples/demo" / demo, tmp_path / demo, url, admin)
    # Prometheus pseudo-samples keep the two arms' mixtures (slower than the raw rows' bets); on
    # shared CI cores the good candidate once reached 45 s undecided after 6,563 requests
    data = yaml.safe_load(spec.read_text())
    data["spec"]["limits"].update({"maxDuration": "75s", "experimentMaxDuration": "150s"})
    spec.write_text(yaml.safe_dump(data))
    meshlab = Meshlab(tmp_path)
    try:
        proc = meshlab.start(
            "canary", "start", "-f", str(spec), "--json", "--runs", str(tmp_path / "runs")
        )
        out, err = proc.communicate(timeout=180)
        assert proc.returncode in (0, 1, 3), err[-3000:]
        result = json.loads(out)
        assert result["verdict"] == expected, (result["reason"], result["metrics"])
        # the statistics really came from Prometheus: bucketed, bracketed latency
        latency = next(m for m in result["metrics"] if m["type"] == "latency")
        assert "bracket" in latency["method"].lower() or "bucket" in latency["method"].lower(), (
            latency
        )
    finally:
        stop_everything(meshlab, tmp_path / "runs")
