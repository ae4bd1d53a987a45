"""The Prometheus backend against a real Prometheus scraping a real Envoy on loopback."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from meshlab.errors import RetryableMetricsError
from meshlab.metrics import (
    ENVOY,
    BracketedComparison,
    MetricsUnavailableError,
    Outage,
    PrometheusMetrics,
    fetch_or_hold,
)
from meshlab.samples import BASELINE, CANDIDATE
from meshlab.spec.analysis import Analysis, Metric
from tests.metrics.conftest import CLUSTERS, Stack, free_port, wait_for

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

# What each arm is sent: (count, delay_ms, status)
TRAFFIC = {
    "baseline": [(45, 0, 200), (5, 0, 500)],
    "candidate": [(54, 30, 200), (3, 30, 503), (3, 30, 404)],
}


def _send(stack: Stack) -> None:
    with httpx.Client(base_url=stack.envoy_url, timeout=10) as client:
        for arm, plan in TRAFFIC.items():
            for count, delay, status in plan:
                for _ in range(count):
                    response = client.get(
                        "/predict",
                        params={"delay_ms": delay, "status": status},
                        headers={"x-arm": arm},
                    )
                    assert response.status_code == status
                    assert response.headers["x-meshlab-arm"] == arm


def _backend(stack: Stack) -> PrometheusMetrics:
    return PrometheusMetrics(
        stack.prometheus_url, ENVOY, {arm: {"arm": c} for arm, c in CLUSTERS.items()}, timeout=5
    )


def _scraped(stack: Stack, arm: str, expected: int) -> bool:
    selector = f'{{envoy_cluster_name="{CLUSTERS[arm]}"}}'
    requests = stack.prom_value(f"sum(envoy_cluster_upstream_rq{selector})")
    latencies = stack.prom_value(f"sum(envoy_cluster_upstream_rq_time_count{selector})")
    return requests == expected and latencies == expected


def test_per_arm_counts_errors_and_latency_buckets_match_what_was_sent(stack: Stack) -> None:
    backend = _backend(stack)
    try:
        assert backend.online()
        first = backend.fetch()
        assert first.is_empty  # the first fetch only marks the start
        _send(stack)
        for arm, plan in TRAFFIC.items():
            total = sum(count for count, _, _ in plan)
            wait_for(
                lambda arm=arm, total=total: _scraped(stack, arm, total),
                20,
                f"{arm} counts in Prometheus",
            )
        window = backend.fetch()
        assert not window.is_empty
        assert window.totals["baseline"].requests == 50
        assert window.totals["baseline"].errors == 5
        assert window.totals["baseline"].latency_observations == 50
        assert window.totals["candidate"].requests == 60
        assert window.totals["candidate"].errors == 6  # 404 and 503 are errors (the one rule)
        assert window.totals["candidate"].latency_observations == 60

        samples = window.samples
        base, cand = samples.arm == BASELINE, samples.arm == CANDIDATE
        assert int(base.sum()) == 50 and int(cand.sum()) == 60
        assert sorted(samples.status[base].tolist()) == [200] * 45 + [500] * 5
        assert sorted(samples.status[cand].tolist()) == [200] * 54 + [404] * 3 + [503] * 3
        # Candidate slept 30 ms: its bucket is (25, 50], so every pseudo-latency is at least 50.
        assert float(np.median(samples.latency_ms[cand])) == 50.0
        assert float(samples.latency_ms[cand].min()) >= 50.0
        # Baseline answered at once: at most a few milliseconds on loopback.
        assert float(np.median(samples.latency_ms[base])) <= 5.0
        assert np.all(np.diff(samples.timestamp) >= 0)
        assert len(set(samples.request_id.tolist())) == 110
        assert not samples.mirrored.any()
        assert "upper bound" in window.approximation
        assert "candidate: median in bucket (25, 50] ms" in window.approximation

        # The bracketed comparison reads the real window: 30 ms against ~1 ms is beyond doubt
        # (about 50 requests per arm are needed before the sequential bounds can decide).
        assert backend.bounds[:6] == (0.5, 1.0, 5.0, 10.0, 25.0, 50.0)
        latency_only = Analysis(
            metrics=[Metric(name="latency-p50", type="latency", quantile=0.5, tolerance=0.1)]
        )
        bracketed = BracketedComparison(latency_only, bounds=backend.bounds)
        bracketed.update(samples)
        assert bracketed.assess().verdict.outcome == "abort"

        # Nothing new: no observations (never zeros that could pass).
        again = backend.fetch()
        assert again.is_empty and len(again.samples) == 0
    finally:
        backend.close()


def test_unreachable_prometheus_is_retryable_and_holds_then_aborts() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    backend = PrometheusMetrics(url, ENVOY, {arm: {"arm": c} for arm, c in CLUSTERS.items()})
    try:
        assert not backend.online()
        started = time.monotonic()
        with pytest.raises(RetryableMetricsError, match="unreachable"):
            backend.fetch()
        assert time.monotonic() - started < 2.0  # no hidden client-side retries with back-off
        now = [0.0]
        outage = Outage(grace_period=30, clock=lambda: now[0])
        assert fetch_or_hold(backend, outage) is None
        now[0] = 29.0
        assert fetch_or_hold(backend, outage) is None
        now[0] = 31.0
        with pytest.raises(MetricsUnavailableError, match="grace period of 30s; aborting"):
            fetch_or_hold(backend, outage)
    finally:
        backend.close()
