"""``metrics.source: prometheus`` end to end: a real Prometheus scraping the local mesh's Envoy.

The statistics then see only what Prometheus stores (counters and 2%-wide latency buckets), not the
load generator's raw rows. On the demo's good and bad candidates the verdicts must be the same as
with raw samples (test_end_to_end.py checks those): promote and abort.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import REPO
from tests.experiment.test_end_to_end import Meshlab, _processes_mentioning

pytestmark = [pytest.mark.envoy, pytest.mark.slow]
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """Prometheus on loopback scraping the (future) outbound Envoy admin port every second."""
    if not Path(PROMETHEUS).exists():
        pytest.fail("prometheus missing: apt-get install -y prometheus (scripts/test.sh does)")
    port, envoy_admin = _free_port(), _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "meshlab-outbound",
                        "metrics_path": "/stats/prometheus",
                        "static_configs": [{"targets": [f"127.0.0.1:{envoy_admin}"]}],
                    }
                ],
            }
        )
    )
    with (tmp_path / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            time.sleep(0.2)
        yield url, envoy_admin
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _prometheus_spec(source: Path, target: Path, url: str, admin_port: int) -> Path:
    spec: dict[str, Any] = yaml.safe_load(source.read_text())
    # Prometheus cannot see predictions: divergence needs raw samples or the KServe collector.
    spec["spec"]["analysis"]["metrics"] = [
        m for m in spec["spec"]["analysis"]["metrics"] if m["type"] != "prediction-divergence"
    ]
    spec["spec"]["metrics"] = {
        "source": "prometheus",
        "prometheus": {"url": url, "interval": "1s", "gracePeriod": "15s"},
    }
    spec["spec"]["local"]["adminPort"] = admin_port
    for version in spec["spec"]["local"].values():
        if isinstance(version, dict) and "command" in version:
            version["command"] = [
                c.replace("{here}/..", str(source.parent.parent)) for c in version["command"]
            ]
    spec["spec"]["load"]["payloads"] = str(REPO / "loadtests/data/breast_cancer.v2.jsonl")
    spec["spec"]["limits"]["experimentMaxDuration"] = "100s"
    spec["spec"]["limits"]["maxDuration"] = "45s"
    target.write_text(yaml.safe_dump(spec))
    return target


@pytest.mark.parametrize(
    ("demo", "expected"), [("canary-good.yaml", "promote"), ("canary-bad.yaml", "abort")]
)
def test_prometheus_source_reaches_the_raw_sample_verdict(
    tmp_path: Path, prometheus: tuple[str, int], demo: str, expected: str
) -> None:
    url, admin = prometheus
    spec = _prometheus_spec(REPO / "examples/demo" / demo, tmp_path / demo, url, admin)
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
        meshlab.kill_all()
        deadline = time.monotonic() + 15
        while _processes_mentioning(str(tmp_path / "runs")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _processes_mentioning(str(tmp_path / "runs"))
