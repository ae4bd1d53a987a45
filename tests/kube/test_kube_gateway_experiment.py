"""``meshlab canary start --target kubernetes`` with ``routing: gateway-api``, end to end.

No cluster can run here, so the Kubernetes API is the faithful fake of tests/kube/ (real REST
paths, server-side apply, HTTPRoute schema and CEL validation, core Services) and there is no data
plane: the load goes to a loopback model server that labels each response with a random arm (and,
for the abort, answers the candidate's requests with 503). Under test: the controller driving a
cluster through the Gateway API: every step applied as HTTPRoute + backend Services, the verdict
carried out (promote; abort with rollback), the state read back by ``status``, and a SIGTERM
ending with rollback routes in the cluster. Every process is stopped by its process group.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube.cli_support import announced_url, meshlab, spec, start_args, started, wait_for
from tests.kube.conftest import GATEWAY_EXAMPLES, backends, parent_service
from tests.kube.fake_apiserver import FakeKubeAPI
from tests.support.gateway_schema import validate_gateway

pytestmark = pytest.mark.slow
ROUTE = "meshlab-fraud-canary"
V1, V2 = "meshlab-fraud-model-v1", "meshlab-fraud-model-v2"
BAD_CANDIDATE = r"""
import http.server, json, random, sys
rng = random.Random(7)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        arm = "candidate" if rng.random() < 0.5 else "baseline"
        status = 503 if arm == "candidate" else 200
        body = json.dumps({"model_name": "m", "outputs": [{"name": "o", "shape": [1],
                           "datatype": "FP64", "data": [0.5]}]}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-meshlab-arm", arm)
        self.end_headers()
        self.wfile.write(body)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
server.daemon_threads = True
print("PORT", server.server_address[1], flush=True)
server.serve_forever()
"""


def _spec(tmp_path: Path, kubeconfig: Path) -> Path:
    """The Gateway API canary example, two steps (50%, 100%), promoting in a few seconds."""
    return spec(
        tmp_path, kubeconfig, GATEWAY_EXAMPLES / "canary.experiment.yaml", routing="gateway-api"
    )


@pytest.fixture
def bad_candidate_url() -> Iterator[str]:
    """A loopback model server whose candidate-labelled answers are all 503."""
    with announced_url([sys.executable, "-c", BAD_CANDIDATE]) as url:
        yield url


def _route(api: FakeKubeAPI) -> dict[str, Any]:
    route = api.get_object("httproutes", "models", ROUTE)
    assert route is not None
    validate_gateway(route)
    return route


def test_gateway_api_canary_promotes_and_status_reads_the_http_route(
    tmp_path: Path, fake_api: FakeKubeAPI, kubeconfig: Path, model_url: str, token: str
) -> None:
    fake_api.put_object(parent_service())
    spec = _spec(tmp_path, kubeconfig)
    run = meshlab(tmp_path, *start_args(spec, model_url, tmp_path / "runs"), timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert token not in run.stdout + run.stderr
    route = _route(fake_api)
    assert route["metadata"]["annotations"]["meshlab.io/step"] == "promoted"
    assert "meshlab.io/holder" not in route["metadata"]["annotations"]  # lease released
    assert backends(route) == {V2}
    for name, version in ((V1, "v1"), (V2, "v2")):
        svc = fake_api.get_object("services", "models", name)
        assert svc is not None
        assert svc["spec"]["selector"] == {
            "app": "fraud-model",
            "tier": "serving",
            "version": version,
        }
    run_dir = next((tmp_path / "runs").glob("*/"))
    applied = sorted(p.name for p in (run_dir / "manifests").glob("*.yaml"))
    assert applied == ["01-step-1.yaml", "02-step-2.yaml", "03-promoted.yaml"]
    kinds = [
        d["kind"] for d in yaml.safe_load_all((run_dir / "manifests" / applied[0]).read_text())
    ]
    assert kinds == ["Service", "Service", "HTTPRoute"]
    assert not fake_api.get_object("virtualservices", "models", ROUTE)
    status = meshlab(tmp_path, "status", "-f", str(spec))
    assert "routing read back from the cluster: step promoted" in status.stdout, (
        status.stdout + status.stderr
    )
    rollback = meshlab(tmp_path, "rollback", "-f", str(spec))
    assert rollback.returncode == 0, rollback.stderr[-2000:]
    assert f"read back from HTTPRoute models/{ROUTE}: step rollback" in rollback.stdout
    assert backends(_route(fake_api)) == {V1}


def test_gateway_api_canary_aborts_and_rolls_back(
    tmp_path: Path, fake_api: FakeKubeAPI, kubeconfig: Path, bad_candidate_url: str
) -> None:
    fake_api.put_object(parent_service())
    spec = _spec(tmp_path, kubeconfig)
    run = meshlab(tmp_path, *start_args(spec, bad_candidate_url, tmp_path / "runs"), timeout=120)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    route = _route(fake_api)
    assert route["metadata"]["annotations"]["meshlab.io/step"] == "rollback"
    assert backends(route) == {V1}
    run_dir = next((tmp_path / "runs").glob("*/"))
    assert any(p.name.endswith("-rollback.yaml") for p in (run_dir / "manifests").glob("*"))
    status = meshlab(tmp_path, "status", "-f", str(spec))
    assert "routing read back from the cluster: step rollback" in status.stdout


def test_sigterm_leaves_gateway_api_rollback_routes_in_the_cluster(
    tmp_path: Path, fake_api: FakeKubeAPI, kubeconfig: Path, model_url: str
) -> None:
    fake_api.put_object(parent_service())
    spec = _spec(tmp_path, kubeconfig)
    with started(tmp_path, *start_args(spec, model_url, tmp_path / "runs")) as proc:

        def at_step_one() -> bool:
            route = fake_api.get_object("httproutes", "models", ROUTE)
            return route is not None and route["metadata"]["annotations"]["meshlab.io/step"] == "1"

        wait_for(at_step_one, proc)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err[-2000:]
    route = _route(fake_api)
    assert route["metadata"]["annotations"]["meshlab.io/step"] == "rollback"
    assert backends(route) == {V1}
    status = meshlab(tmp_path, "status", "-f", str(spec))
    assert "routing read back from the cluster: step rollback" in status.stdout
