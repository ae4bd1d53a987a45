"""The sample model server's developing faults, run as a real process: ramp, hang and crash.

Each server is started on a loopback port in its own session and stopped by PID in ``finally``.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from scipy import stats

from meshlab.freeport import free_port
from meshlab.mesh.processes import http_ok
from tests.mesh.conftest import BODIES, EXAMPLES, INFER_PATH

SERVE = EXAMPLES / "models" / "serve.py"


@contextmanager
def model_server(tmp_path: Path, *flags: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    log = (tmp_path / f"serve-{port}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(SERVE), "--version", "good", "--port", str(port), *flags],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not http_ok(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1.0):
            assert proc.poll() is None, (tmp_path / f"serve-{port}.log").read_text()
            assert time.monotonic() < deadline, "the sample server did not get ready in 60s"
            time.sleep(0.1)
        yield port, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        log.close()


def _infer(port: int, timeout: float = 10.0) -> tuple[float, int]:
    """(latency ms, status) of one inference on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        started = time.monotonic()
        conn.request("POST", INFER_PATH, BODIES[0], {"content-type": "application/json"})
        response = conn.getresponse()
        response.read()
        return (time.monotonic() - started) * 1000.0, response.status
    finally:
        conn.close()


def test_the_ramp_makes_latency_creep_up_and_5xx_share_rise(tmp_path: Path) -> None:
    ramp_s, ramp_ms = 3.0, 150.0
    flags = ("--ramp-seconds", "3", "--ramp-latency-ms", "150", "--ramp-error-rate", "1.0")
    with model_server(tmp_path, *flags) as (port, _):
        rows: list[tuple[float, float, int]] = []  # (seconds since the first request, ms, status)
        first = time.monotonic()
        while time.monotonic() - first < ramp_s + 1.0:
            at = time.monotonic() - first
            latency, status = _infer(port)
            rows.append((at, latency, status))
    ramping = [r for r in rows if r[0] < ramp_s]
    full = [r for r in rows if r[0] >= ramp_s + 0.05]
    early = [r for r in rows if r[0] < 0.3]
    assert len(ramping) >= 15 and len(full) >= 3 and early
    # Full ramp: every answer takes at least the whole added latency, and every answer is a 500.
    assert all(latency >= ramp_ms for _, latency, _ in full)
    assert {status for _, _, status in full} == {500}
    # At the start almost nothing is added yet (at most 10% of the ramp), and nearly all succeed.
    assert min(latency for _, latency, _ in early) < ramp_ms * 0.1 + 40
    # In between, latency grows with time and failures with it.
    rho = stats.spearmanr([r[0] for r in ramping], [r[1] for r in ramping]).statistic
    assert rho > 0.8, rho
    half = len(ramping) // 2
    early_fail = sum(r[2] == 500 for r in ramping[:half])
    late_fail = sum(r[2] == 500 for r in ramping[half:])
    table = [[early_fail, half - early_fail], [late_fail, len(ramping) - half - late_fail]]
    p = stats.fisher_exact(table, alternative="less").pvalue
    print(f"ramp: {len(rows)} requests, latency~time rho={rho:.2f}, 5xx {table}, p={p:.2g}")
    assert late_fail > early_fail and p < 0.01


def test_hang_after_keeps_connections_open_but_never_answers(tmp_path: Path) -> None:
    with model_server(tmp_path, "--hang-after", "0.3") as (port, proc):
        assert _infer(port)[1] == 200
        time.sleep(0.4)
        with pytest.raises(TimeoutError):
            _infer(port, timeout=1.0)
        assert not http_ok(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1.0)
        assert proc.poll() is None  # alive, silent


def test_crash_after_exits_with_code_1(tmp_path: Path) -> None:
    with model_server(tmp_path, "--crash-after", "0.5") as (port, proc):
        assert _infer(port)[1] == 200
        assert proc.wait(timeout=10) == 1
