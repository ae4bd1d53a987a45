"""Real MLServer servers (PyPI ``mlserver`` + ``mlserver-sklearn``) for the end-to-end tests.

MLServer lives in its own virtualenv, ``.venv-mlserver`` at the repository root, installed by
``scripts/test.sh``. Without it the tests are skipped with the exact install command, except in CI
(``CI=true``), where they fail: there they must run. Servers start once per module, on free
loopback ports, and are stopped by their process group id in ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshlab.freeport import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "mlserver"
VENV = REPO / ".venv-mlserver"
MLSERVER = VENV / "bin" / "mlserver"
INSTALL = (
    "python3 -m venv .venv-mlserver && "
    ".venv-mlserver/bin/pip install mlserver==1.7.1 mlserver-sklearn==1.7.1"
)
STARTUP_S = 180.0


def require_mlserver() -> None:
    """Skip (developer machine) or fail (CI) when MLServer is not installed."""
    if MLSERVER.exists():
        return
    message = f"MLServer is not installed; run: {INSTALL}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI must run the MLServer tests)")
    pytest.skip(message)


def trained() -> None:
    """Train the example models into examples/mlserver/models/*/model.joblib once."""
    if all((EXAMPLE / "models" / v / "model.joblib").exists() for v in ("v1", "v2", "shuffled")):
        return
    subprocess.run(
        [str(VENV / "bin" / "python"), str(EXAMPLE / "train.py")],
        check=True,
        capture_output=True,
        timeout=120,
    )


@dataclass
class Server:
    variant: str
    url: str
    ready: str
    proc: subprocess.Popen[bytes]
    log: Path


def start(variant: str, name: str, logs: Path, label: str | None = None) -> Server:
    http = free_port()
    env = {
        **os.environ,
        "MLSERVER_HOST": "127.0.0.1",
        "MLSERVER_HTTP_PORT": str(http),
        "MLSERVER_GRPC_PORT": str(free_port()),
        "MLSERVER_METRICS_PORT": str(free_port()),
        "MLSERVER_PARALLEL_WORKERS": "0",
        "PYTHONPATH": str(EXAMPLE),
    }
    log = logs / f"mlserver-{label or variant}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(MLSERVER), "start", str(EXAMPLE / "models" / variant)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=EXAMPLE,
            process_group=0,
        )
    url = f"http://127.0.0.1:{http}"
    return Server(variant, url, f"{url}/v2/models/{name}/ready", proc, log)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def stop(servers: list[Server]) -> None:
    for server in servers:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGTERM)
    for server in servers:
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait(timeout=5)


@contextlib.contextmanager
def running(variants: dict[str, str], logs: Path) -> Iterator[dict[str, Server]]:
    """Start ``{variant: model name}`` at once, wait until each model is ready, stop them all."""
    with running_as({v: (v, name) for v, name in variants.items()}, logs) as started:
        yield started


@contextlib.contextmanager
def running_as(copies: dict[str, tuple[str, str]], logs: Path) -> Iterator[dict[str, Server]]:
    """Start ``{label: (variant, model name)}`` (several copies of one variant allowed), wait until
    each model is ready, stop them all; the result is keyed by label."""
    servers: list[Server] = []
    labels = list(copies)
    try:
        for label, (variant, name) in copies.items():
            servers.append(start(variant, name, logs, label))
        deadline = time.monotonic() + STARTUP_S
        for server in servers:
            while not _ready(server.ready):
                code = server.proc.poll()
                if code is not None or time.monotonic() > deadline:
                    tail = server.log.read_text(errors="replace")[-800:]
                    raise RuntimeError(f"MLServer {server.variant} not ready (exit {code}): {tail}")
                time.sleep(0.3)
        yield dict(zip(labels, servers, strict=True))
    finally:
        stop(servers)
