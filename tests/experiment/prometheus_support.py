"""A real Prometheus for the end-to-end runs with ``metrics.source: prometheus``, and their spec.

:func:`local_prometheus` starts the Debian ``prometheus`` on loopback, scraping the (future)
outbound Envoy's admin port every second (the spec gets that port as ``local.adminPort``), waits
until it is ready and stops it by PID when the block ends, even when the test fails (a test may
SIGKILL it first). :func:`prometheus_spec` turns a demo spec into one that reads Prometheus;
:func:`stop_everything` ends a run's processes and checks none is left.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import REPO
from tests.experiment.test_end_to_end import Meshlab, _processes_mentioning
from tests.metrics.conftest import PROMETHEUS, free_port, start_prometheus


@contextmanager
def local_prometheus(tmp_path: Path) -> Iterator[tuple[str, int, subprocess.Popen[bytes]]]:
    """(Prometheus URL, the admin port it scrapes, its process), ready to query."""
    if not Path(PROMETHEUS).exists():
        pytest.fail("prometheus missing: apt-get install -y prometheus (scripts/test.sh does)")
    port, envoy_admin = free_port(), free_port()
    proc = start_prometheus(tmp_path, port, {"meshlab-outbound": f"127.0.0.1:{envoy_admin}"})
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
        yield url, envoy_admin, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def prometheus_spec(source: Path, target: Path, url: str, admin_port: int) -> Path:
    """``source`` (a demo spec) reading its metrics from Prometheus at ``url``, written to
    ``target``: the local mesh's admin port fixed, divergence dropped, the repo's payloads."""
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


def stop_everything(meshlab: Meshlab, runs: Path) -> None:
    """Kill what the run started (by PID) and check that no process of it is left."""
    meshlab.kill_all()
    deadline = time.monotonic() + 15
    while _processes_mentioning(str(runs)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_mentioning(str(runs))
