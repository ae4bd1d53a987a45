"""A canary with a control arm on Kubernetes, against the fake API server (issue 13).

No cluster can run here, so the Kubernetes API is the faithful fake of tests/kube/ (real REST
paths, server-side apply, CRD validation) and there is no data plane: the load goes to a loopback
model server that labels each response with a random arm at the step's shares (candidate 25%,
control 25%, production 50%). Under test: every applied step carries the control subset and its
weight, the DestinationRule declares the control subset with labels derived from the baseline's,
the verdict compares the candidate with the control, and the rollback or promotion leaves the
control subset declared but unrouted. The meshlab process and the model server are stopped by
their process groups whatever happens.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.kube.cli_support import meshlab as _meshlab
from tests.kube.cli_support import spec as _spec
from tests.kube.fake_apiserver import FakeKubeAPI

pytestmark = pytest.mark.slow
NAME = "fraud-canary"
SERVER = REPO / "loadtests/support/arm_server.py"


@pytest.fixture
def three_arm_url() -> Iterator[str]:
    """A loopback server answering as the candidate 25%, the control 25%, production 50%."""
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--arm", "random:0.25:0.25"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        yield f"http://127.0.0.1:{line.split()[1]}"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def _with_control(spec: Path) -> Path:
    data: dict[str, Any] = yaml.safe_load(spec.read_text())
    data["spec"]["control"] = {}
    data["spec"]["canary"] = {"steps": [25]}
    spec.write_text(yaml.safe_dump(data))
    return spec


def test_canary_with_control_on_kubernetes_routes_the_control_and_compares_with_it(
    tmp_path: Path, fake_api: FakeKubeAPI, kubeconfig: Path, three_arm_url: str
) -> None:
    spec = _with_control(_spec(tmp_path, kubeconfig))
    runs = tmp_path / "runs"
    run = _meshlab(
        tmp_path, "canary", "start", "-f", str(spec), "--url", three_arm_url, "--json",
        "--runs", str(runs), timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["verdict"] == "promote", result["reason"]
    assert {m["comparison"] for m in result["metrics"]} == {"candidate vs control"}
    assert result["steps"][0]["requests"]["control"] > 0
    # the applied step: production 100-2w, control w, candidate w
    run_dir = next(runs.glob("*/"))
    docs = list(yaml.safe_load_all((run_dir / "manifests" / "01-step-1.yaml").read_text()))
    vs = next(d for d in docs if d["kind"] == "VirtualService")
    weights = {d["destination"]["subset"]: d["weight"] for d in vs["spec"]["http"][-1]["route"]}
    assert weights == {"v1": 50, "v2": 25, "control": 25}, weights
    # in the cluster: the DestinationRule declares the control subset (labels derived from the
    # baseline's), and after the promotion nothing routes to it
    dr = fake_api.get_object("destinationrules", "models", f"meshlab-{NAME}")
    assert dr is not None
    subsets = {s["name"]: s["labels"] for s in dr["spec"]["subsets"]}
    baseline_labels = subsets["v1"]
    assert subsets["control"] == {k: f"{v}-control" for k, v in baseline_labels.items()}
    live = fake_api.get_object("virtualservices", "models", f"meshlab-{NAME}")
    assert live is not None
    assert [d["destination"]["subset"] for d in live["spec"]["http"][-1]["route"]] == ["v2"]
