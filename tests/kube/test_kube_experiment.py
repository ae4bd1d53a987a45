"""``meshlab canary start --target kubernetes`` end to end, against the fake API server.

No cluster can run here, so the Kubernetes API is the faithful fake of tests/kube/ (real REST
paths, server-side apply, CRD validation) and there is no data plane: the load goes to a loopback
model server that labels responses with a random arm. What is under test is the controller driving
a cluster: every step applied as validated objects, the verdict carried out, the routing state
read back from the cluster by ``status``, and a SIGTERM ending with rollback routes in the cluster.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube.cli_support import meshlab as _meshlab
from tests.kube.cli_support import spec as _spec
from tests.kube.cli_support import start_args, started, wait_for
from tests.kube.fake_apiserver import FakeKubeAPI

pytestmark = pytest.mark.slow
NAME = "fraud-canary"


def _step(api: FakeKubeAPI) -> str | None:
    vs = api.get_object("virtualservices", "models", f"meshlab-{NAME}")
    return None if vs is None else vs["metadata"]["annotations"].get("meshlab.io/step")


def _virtual_service(api: FakeKubeAPI) -> dict[str, Any]:
    vs = api.get_object("virtualservices", "models", f"meshlab-{NAME}")
    assert vs is not None
    return vs


def test_canary_on_kubernetes_promotes_and_status_reads_the_cluster(
    tmp_path: Path, fake_api: FakeKubeAPI, kubeconfig: Path, model_url: str, token: str
) -> None:
    spec = _spec(tmp_path, kubeconfig)
    run = _meshlab(tmp_path, *start_args(spec, model_url, tmp_path / "runs"), timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert token not in run.stdout + run.stderr
    vs = _virtual_service(fake_api)
    assert vs["metadata"]["annotations"]["meshlab.io/step"] == "promoted"
    route = vs["spec"]["http"][0]
    assert [d["destination"]["subset"] for d in route["route"]] == ["v2"]
    applied = sorted(
        p.name for p in next((tmp_path / "runs").glob("*/")).joinpath("manifests").glob("*.yaml")
    )
    assert applied == ["01-step-1.yaml", "02-step-2.yaml", "03-promoted.yaml"]
    status = _meshlab(tmp_path, "status", "-f", str(spec))
    assert "routing read back from the cluster: step promoted" in status.stdout, (
        status.stdout + status.stderr
    )


def test_sigterm_leaves_rollback_routes_in_the_cluster(
    tmp_path: Path, fake_api: FakeKubeAPI, kubeconfig: Path, model_url: str
) -> None:
    spec = _spec(tmp_path, kubeconfig)
    with started(tmp_path, *start_args(spec, model_url, tmp_path / "runs")) as proc:
        wait_for(lambda: _step(fake_api) == "1", proc)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err[-2000:]
    vs = _virtual_service(fake_api)
    assert vs["metadata"]["annotations"]["meshlab.io/step"] == "rollback"
    assert all(d["destination"]["subset"] == "v1" for r in vs["spec"]["http"] for d in r["route"])
    assert all("mirror" not in r for r in vs["spec"]["http"])
    status = _meshlab(tmp_path, "status", "-f", str(spec))
    assert "routing read back from the cluster: step rollback" in status.stdout


def test_dry_run_stores_nothing(
    tmp_path: Path, fake_api: FakeKubeAPI, kubeconfig: Path, model_url: str
) -> None:
    spec = _spec(tmp_path, kubeconfig)
    data = yaml.safe_load(spec.read_text())
    data["spec"]["limits"] = {"minSamples": 50, "maxDuration": "5s", "experimentMaxDuration": "8s"}
    spec.write_text(yaml.safe_dump(data))
    args = start_args(spec, model_url, tmp_path / "runs", "--dry-run")
    run = _meshlab(tmp_path, *args, timeout=90)
    assert run.returncode in (0, 3), run.stderr[-2000:]
    assert fake_api.get_object("virtualservices", "models", f"meshlab-{NAME}") is None
    assert fake_api.get_object("destinationrules", "models", f"meshlab-{NAME}") is None
