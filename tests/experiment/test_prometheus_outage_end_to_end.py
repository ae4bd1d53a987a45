"""Prometheus killed mid-step on a real local-mesh run (issue 18: no data, no progress).

The real CLI (``python -m meshlab canary start``) runs the good demo candidate on the real local
mesh with ``metrics.source: prometheus`` and the spec's default ``gracePeriod`` (60 s) and query
timeout, with ``maxDuration: 30s`` as in the report that filed the issue (the default 2 minutes
would outlast the grace period and hide the bug). A real Prometheus (Debian) is killed by PID with
SIGKILL 2 s into step 1. Before the fix step 2 (50%) was applied at 30 s with no data; now the
step holds, the source gives up after its grace period, and the run ends as an infrastructure
failure (exit 4) that names Prometheus, with a confirmed rollback, its steps and its analysis.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
def prometheus(tmp_path: Path) -> Iterator[tuple[str, int, subprocess.Popen[bytes]]]:
    """Prometheus on loopback scraping the (future) outbound Envoy admin port every second."""
    with local_prometheus(tmp_path) as running:
        yield running


def test_prometheus_killed_mid_step_never_lets_the_weight_rise(
    tmp_path: Path, prometheus: tuple[str, int, subprocess.Popen[bytes]]
) -> None:
    url, admin, prom = prometheus
    spec_file = prometheus_spec(
        REPO / "examples/demo/canary-good.yaml", tmp_path / "spec.yaml", url, admin
    )
    spec: dict[str, Any] = yaml.safe_load(spec_file.read_text())
    spec["spec"]["metrics"]["prometheus"] = {"url": url, "interval": "1s"}  # default grace, timeout
    spec["spec"]["limits"] = {"minSamples": 300, "maxDuration": "30s"}  # default experiment limit
    spec_file.write_text(yaml.safe_dump(spec))
    meshlab = Meshlab(tmp_path)
    try:
        proc = meshlab.start(
            "canary", "start", "-f", str(spec_file), "--json", "--runs", str(tmp_path / "runs")
        )
        meshlab.wait_for("step-applied", timeout=90)
        time.sleep(2.0)
        prom.send_signal(signal.SIGKILL)  # by PID: Prometheus is this fixture's child
        prom.wait(timeout=10)
        killed = time.time()
        out, err = proc.communicate(timeout=180)
        ended = time.time()

        events = meshlab.events()
        assert proc.returncode == 4, (proc.returncode, err[-3000:])
        raised = [e for e in events if e["event"] == "step-applied" and e["time"] > killed]
        assert raised == [], raised  # the weight never increased after the kill
        weights = [e["weight"] for e in events if e["event"] == "step-applied"]
        assert weights == sorted(weights) and len(weights) <= 2, weights
        held = [e for e in events if e["event"] == "step-held"]
        assert held and "Prometheus at" in held[0]["reason"], events[-5:]

        result = json.loads(out)
        assert "Prometheus" in result["reason"] and "infrastructure failure" in result["reason"]
        assert "rolled back" in result["reason"], result["reason"]
        for text in (out, err, result["reason"]):
            assert "ROLLBACK FAILED" not in text
        assert result["rollback"] is not None
        assert result["steps"] and result["metrics"], result
        state = json.loads(next((tmp_path / "home" / "experiments").glob("*.json")).read_text())
        assert state["step"] == "rollback" and state["phase"] == "failed", state
        # the source gives up one grace period (60 s) after its first failed query, not before
        assert 55.0 <= ended - killed <= 120.0, ended - killed
        took = result["rollback"]["applied_at"] - killed
        print(f"FAULT-TIMING Prometheus SIGKILL: fault -> rollback applied {took:.2f} s")
    finally:
        stop_everything(meshlab, tmp_path / "runs")
