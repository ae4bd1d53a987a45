"""Running the real ``meshlab`` CLI against the fake API server: a spec, its environment, helpers.

Every process started here is stopped by its process group, even when the test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO


def spec(
    tmp_path: Path,
    kubeconfig: Path,
    example: Path = REPO / "istio_manifests/examples/canary.experiment.yaml",
    **target: Any,
) -> Path:
    """A two-step canary (50%, 100%) on Kubernetes that promotes in a few seconds at 80 rps,
    from ``example`` (a golden example spec), with ``target`` added to its target section."""
    data: dict[str, Any] = yaml.safe_load(example.read_text())
    body = data["spec"]
    body["canary"] = {"steps": [50, 100]}
    body["analysis"] = {
        "metrics": [
            {"name": "latency-p50", "type": "latency", "quantile": 0.5, "tolerance": "50%"},
            {"name": "errors", "type": "error-rate", "tolerance": "5%"},
        ]
    }
    body["limits"] = {"minSamples": 100, "maxDuration": "20s", "experimentMaxDuration": "45s"}
    body["load"] = {
        "protocol": "v2",
        "model": "breast-cancer",
        "rps": 80,
        "payloads": str(REPO / "loadtests/data/breast_cancer.v2.jsonl"),
    }
    body["target"] = {
        "kind": "kubernetes",
        "kubeconfig": str(kubeconfig),
        "requestTimeout": "5s",
        **target,
    }
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start_args(path: Path, url: str, runs: Path, *extra: str) -> tuple[str, ...]:
    """``meshlab canary start`` of the spec at ``path``, load to ``url``, run directories in ``runs``."""
    return (
        "canary",
        "start",
        "-f",
        str(path),
        "--url",
        url,
        "--quiet",
        "--runs",
        str(runs),
        *extra,
    )


def env(tmp_path: Path, home: str = "home") -> dict[str, str]:
    """The environment of a meshlab process: no proxies, no in-cluster config, its own home."""
    kept = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy") and k != "KUBERNETES_SERVICE_HOST"
    }
    return {**kept, "MESHLAB_HOME": str(tmp_path / home)}


def meshlab(
    tmp_path: Path, *args: str, timeout: float = 60, home: str = "home"
) -> subprocess.CompletedProcess[str]:
    """Run ``meshlab *args`` to its end (``home``: its MESHLAB_HOME under ``tmp_path``)."""
    return subprocess.run(
        [sys.executable, "-m", "meshlab", *args],
        cwd=REPO,
        env=env(tmp_path, home),
        text=True,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def started(tmp_path: Path, *args: str, home: str = "home") -> Iterator[subprocess.Popen[str]]:
    """``meshlab *args`` in its own process group; SIGKILLed with its children if still running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshlab", *args],
        cwd=REPO,
        env=env(tmp_path, home),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        # Locust and its workers are in the same group: make sure none outlives the test.
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def wait_for(
    condition: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 60
) -> None:
    """Poll ``condition`` until true; fail early if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"meshlab exited {proc.returncode} first: {err[-2000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g}s")


@contextmanager
def announced_url(command: list[str]) -> Iterator[str]:
    """Run ``command`` (a loopback server printing ``PORT <n>`` first); its URL while it runs.

    Stopped by its PID (SIGTERM, then waited for) when the block ends, even when the test fails.
    """
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("PORT "), line
        yield f"http://127.0.0.1:{line.split()[1]}"
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
