"""Outages of a real Prometheus (Debian package) on loopback: frozen, rejecting a query, gone.

Prometheus runs in its own process group and is continued (if stopped) and stopped by PID in
``finally``. The failure shapes a real server cannot produce on demand (a body cut mid-way, 401,
503) are in ``test_outages.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshlab.errors import PermanentMetricsError, RetryableMetricsError
from meshlab.metrics import (
    ENVOY,
    MetricsUnavailableError,
    Outage,
    PrometheusLiveSamples,
    PrometheusMetrics,
    QueryTemplate,
    TemplateSet,
)
from tests.metrics.conftest import (
    CLUSTERS,
    free_port,
    require_binaries,
    start_prometheus,
    stop,
    wait_for,
)
from tests.metrics.test_outages import IdleLoad

pytestmark = [pytest.mark.slow]

ARMS = {arm: {"arm": c} for arm, c in CLUSTERS.items()}
QUERY_TIMEOUT = 0.5


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    require_binaries()
    port = free_port()
    proc = start_prometheus(tmp_path, port, {"self": f"127.0.0.1:{port}"})
    url = f"http://127.0.0.1:{port}"
    try:
        probe = PrometheusMetrics(url, ENVOY, ARMS, timeout=2.0)
        try:
            wait_for(probe.online, 30, "Prometheus answering queries")
        finally:
            probe.close()
        yield url, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGCONT)
        stop(proc)


def test_a_frozen_prometheus_is_held_and_aborts_one_timeout_after_the_grace_period(
    prometheus: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, proc = prometheus
    prom = PrometheusMetrics(url, ENVOY, ARMS, timeout=QUERY_TIMEOUT)
    try:
        prom.check()
        prom.fetch()
        os.killpg(proc.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(RetryableMetricsError, match="within the query timeout"):
                prom.fetch()
            assert time.monotonic() - started < QUERY_TIMEOUT + 0.5

            grace = 1.0
            live = PrometheusLiveSamples(
                prom, IdleLoad(), interval=30.0, outage=Outage(grace), settle=0.0
            )
            started = time.monotonic()
            with pytest.raises(MetricsUnavailableError, match="unreachable since"):
                while time.monotonic() - started < 10:
                    live.poll(0.05)
            took = time.monotonic() - started
            print(f"frozen real Prometheus: abort after {took:.2f}s (grace {grace}s)")
            assert grace < took <= grace + QUERY_TIMEOUT + 0.5
        finally:
            os.killpg(proc.pid, signal.SIGCONT)
        wait_for(prom.online, 10, "Prometheus answering again")
        prom.fetch()  # answers again: the outage is over
    finally:
        prom.close()


def test_a_query_prometheus_rejects_is_permanent_with_its_reason(
    prometheus: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, _ = prometheus
    broken = TemplateSet(
        "broken",
        QueryTemplate("requests", "sum by (code) (rate(x{c=$arm}[1m])"),  # unbalanced
        QueryTemplate("latency", "sum by (le) (rate(y{c=$arm}[1m]))"),
        "code",
    )
    prom = PrometheusMetrics(url, broken, ARMS, timeout=2.0)
    try:
        with pytest.raises(PermanentMetricsError, match=r"rejected .* as bad \(HTTP 400: .*parse"):
            prom.fetch()
    finally:
        prom.close()


def test_a_stopped_prometheus_refuses_and_is_transient(
    prometheus: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, proc = prometheus
    prom = PrometheusMetrics(url, ENVOY, ARMS, timeout=2.0)
    try:
        prom.fetch()
        stop(proc)
        with pytest.raises(RetryableMetricsError, match=r"unreachable \(connection refused\)"):
            prom.fetch()
    finally:
        prom.close()
