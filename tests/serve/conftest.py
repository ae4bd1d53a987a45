"""Real components for ``meshlab serve``: meshlab's local mesh (real Envoy), Prometheus, the service.

The local mesh splits traffic 50/50 between two loopback model servers (threads of this process)
whose faults can be switched between scenarios (``Faults``: extra latency, error share); Prometheus
(Debian package) scrapes the mesh's Envoys every second; ``meshlab serve`` runs as a real
subprocess (``python -m meshlab serve``), so a test can stop and restart it by PID. Every process
is stopped by PID in ``finally``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
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
import yaml

from meshlab.mesh.local import LocalMesh
from meshlab.spec import Experiment
from tests.metrics.conftest import (
    free_port,
    require_binaries,
    stop,
    wait_for,
)
from tests.support.scraped_mesh import scraped_mesh

HOST, PORT = "fraud-model", 8080
CLUSTERS = {"baseline": f"outbound|{PORT}|v1|{HOST}", "candidate": f"outbound|{PORT}|v2|{HOST}"}
REPO = Path(__file__).resolve().parents[2]
# Reads are evaluated this long in the past: the test Prometheus scrapes every second (so a scrape
# times out within 1 s) and a look must see only samples that are final (see serve.evidence).
READ_LAG = 1.5

PROFILES = {
    # What a team would judge a model service on: p50 within 20%, error rate within 3 points.
    "default": {
        "alpha": 0.05,
        "beta": 0.05,
        "metrics": [
            {"name": "latency-p50", "type": "latency", "quantile": 0.5, "tolerance": "20%"},
            {"name": "errors", "type": "error-rate", "tolerance": "3%"},
        ],
    }
}


@dataclass
class Faults:
    """Switchable behaviour of one model server."""

    delay_ms: float = 8.0
    jitter_ms: float = 2.0
    error_rate: float = 0.0


def _handler(faults: Faults) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0 (one request per connection): with keep-alive, headers and body in two writes
        # meet Nagle's algorithm and delayed ACKs and every answer gains ~40 ms.
        def do_GET(self) -> None:
            time.sleep(max(0.0, faults.delay_ms + random.uniform(-1, 1) * faults.jitter_ms) / 1e3)
            status = 500 if random.random() < faults.error_rate else 200
            body = json.dumps({"predictions": [0.5]}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@dataclass
class MeshStack:
    mesh: LocalMesh
    prometheus_url: str
    faults: dict[str, Faults]

    def traffic(self, seconds: float, rate: float) -> dict[str, int]:
        """Send ``rate`` requests/s through the mesh for ``seconds``; requests per arm served."""
        served = {"baseline": 0, "candidate": 0}
        deadline = time.monotonic() + seconds
        with httpx.Client(base_url=self.mesh.url, timeout=10) as client:
            next_at = time.monotonic()
            while time.monotonic() < deadline:
                answer = client.get("/predict")
                served[answer.headers.get("x-meshlab-arm", "baseline")] += 1
                next_at += 1.0 / rate
                time.sleep(max(0.0, next_at - time.monotonic()))
        return served


def _experiment(urls: dict[str, str], prometheus_url: str) -> Experiment:
    return Experiment.model_validate(
        {
            "apiVersion": "meshlab.io/v1alpha1",
            "kind": "Experiment",
            "metadata": {"name": "serve", "namespace": "models"},
            "spec": {
                "strategy": "canary",
                "service": {"host": HOST, "port": PORT},
                "baseline": {"subset": "v1", "labels": {"version": "v1"}},
                "candidate": {"subset": "v2", "labels": {"version": "v2"}},
                "canary": {"steps": [50]},
                "metrics": {"source": "prometheus", "prometheus": {"url": prometheus_url}},
                "local": {
                    "baseline": {"url": urls["baseline"]},
                    "candidate": {"url": urls["candidate"]},
                    "startupTimeout": "30s",
                    "captureMirrored": False,
                },
            },
        }
    )


@contextlib.contextmanager
def running_mesh(tmp: Path) -> Iterator[MeshStack]:
    """The local mesh, its model servers and Prometheus, stopped by PID on exit."""
    require_binaries()
    faults = {"baseline": Faults(), "candidate": Faults()}
    servers = {arm: ThreadingHTTPServer(("127.0.0.1", 0), _handler(f)) for arm, f in faults.items()}
    for server in servers.values():
        threading.Thread(target=server.serve_forever, daemon=True).start()
    with scraped_mesh(tmp, servers, _experiment) as (_, mesh, prometheus_url):
        yield MeshStack(mesh, prometheus_url, faults)


@pytest.fixture(scope="package")
def mesh_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeshStack]:
    with running_mesh(tmp_path_factory.mktemp("serve-mesh")) as stack:
        yield stack


class ServeProcess:
    """``python -m meshlab serve`` on a loopback port; restartable, stopped by PID."""

    def __init__(self, prometheus_url: str, state_dir: Path, profiles: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            sys.executable, "-m", "meshlab", "serve", "--host", "127.0.0.1",
            "--port", str(self.port), "--prometheus-url", prometheus_url,
            "--state-dir", str(state_dir), "--analysis", str(profiles),
            "--prometheus-read-lag", str(READ_LAG),
        ]  # fmt: skip
        self.log = log
        self.state_dir = state_dir
        self.prometheus_url = prometheus_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: list[int] = []

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.pids.append(self.proc.pid)
        wait_for(lambda: httpx.get(f"{self.url}/healthz").status_code == 200, 30, "meshlab serve")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def running_serve(stack: MeshStack, tmp: Path) -> Iterator[ServeProcess]:
    """``meshlab serve`` with the PROFILES file, reading ``stack``'s Prometheus; stopped on exit."""
    profiles = tmp / "profiles.yaml"
    profiles.write_text(yaml.safe_dump(PROFILES))
    process = ServeProcess(stack.prometheus_url, tmp / "state", profiles, tmp / "serve.log")
    try:
        process.start()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def serve(
    mesh_stack: MeshStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    """One service per test module: sessions are keyed apart, so tests do not share evidence."""
    with running_serve(mesh_stack, tmp_path_factory.mktemp("serve")) as process:
        yield process
