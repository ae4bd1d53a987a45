"""Per-series deltas over time: restarts, stale series, histogram lag, no data.

These situations cannot be staged on demand with a real Prometheus in a bounded test (a restart
between two scrapes, a series that misses a scrape), so a loopback stand-in for the query API
answers each query from a script; the real HTTP client and parsing are exercised.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest

from meshlab.metrics import ENVOY, PrometheusMetrics
from meshlab.metrics.sourced import PSEUDO_PREFIX

BOUNDS = ("1", "5", "25", "50", "+Inf")
ARMS = {"baseline": {"arm": "b"}, "candidate": {"arm": "c"}}


def counter(cluster: str, code: str, value: float, pod: str = "p1") -> dict[str, Any]:
    return {
        "metric": {"envoy_cluster_name": cluster, "envoy_response_code": code, "pod": pod},
        "value": [0, str(value)],
    }


def buckets(cluster: str, cumulative: list[float], pod: str = "p1") -> list[dict[str, Any]]:
    return [
        {"metric": {"envoy_cluster_name": cluster, "le": le, "pod": pod}, "value": [0, str(v)]}
        for le, v in zip(BOUNDS, cumulative, strict=True)
    ]


class Script(BaseHTTPRequestHandler):
    """Answers queries from ``state``: cluster -> (requests series, bucket series)."""

    state: ClassVar[dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]] = {}

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)["query"][0]
        cluster = query.split('envoy_cluster_name="', 1)[1].split('"', 1)[0]
        requests_series, bucket_series = self.state.get(cluster, ([], []))
        result = bucket_series if "_bucket" in query else requests_series
        body = json.dumps(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def backend() -> Iterator[PrometheusMetrics]:
    Script.state = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Script)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    ticks = iter(float(t) for t in range(100, 10_000, 10))
    metrics = PrometheusMetrics(
        f"http://127.0.0.1:{server.server_address[1]}", ENVOY, ARMS, clock=lambda: next(ticks)
    )
    try:
        yield metrics
    finally:
        metrics.close()
        server.shutdown()
        server.server_close()


def test_a_restarted_process_counts_from_zero_not_negative(backend: PrometheusMetrics) -> None:
    Script.state = {"b": ([counter("b", "200", 100)], buckets("b", [50, 100, 100, 100, 100]))}
    backend.fetch()
    # p1 restarted (100 -> 7) while a second pod p2 appeared with 3 requests.
    Script.state = {
        "b": (
            [counter("b", "200", 7), counter("b", "200", 3, pod="p2")],
            buckets("b", [7, 7, 7, 7, 7]) + buckets("b", [0, 3, 3, 3, 3], pod="p2"),
        )
    }
    window = backend.fetch()
    assert window.totals["baseline"].requests == 10
    assert sorted(window.samples.latency_ms.tolist()) == [1.0] * 7 + [5.0] * 3


def test_a_series_missing_from_one_scrape_is_not_counted_twice(backend: PrometheusMetrics) -> None:
    full = ([counter("b", "200", 40)], buckets("b", [40, 40, 40, 40, 40]))
    Script.state = {"b": full}
    backend.fetch()
    Script.state = {}  # the target missed a scrape: its series went stale
    assert backend.fetch().is_empty
    Script.state = {"b": ([counter("b", "200", 45)], buckets("b", [45, 45, 45, 45, 45]))}
    assert backend.fetch().totals["baseline"].requests == 5


def test_latencies_that_lag_the_counter_are_carried_over_once(backend: PrometheusMetrics) -> None:
    Script.state = {"c": ([counter("c", "200", 0)], buckets("c", [0, 0, 0, 0, 0]))}
    backend.fetch()
    # Counter live, histogram not flushed yet: the 4 requests wait for their latencies.
    Script.state = {"c": ([counter("c", "200", 4)], buckets("c", [0, 0, 0, 0, 0]))}
    held = backend.fetch()
    assert held.is_empty and "candidate" not in held.totals
    Script.state = {"c": ([counter("c", "200", 6)], buckets("c", [0, 0, 6, 6, 6]))}
    window = backend.fetch()
    assert window.totals["candidate"].requests == 6
    assert window.samples.latency_ms.tolist() == [25.0] * 6
    # SourcedComparison tells Prometheus's pseudo-samples from raw rows by this prefix
    assert all(rid.startswith(PSEUDO_PREFIX) for rid in window.samples.request_id.tolist())


def test_requests_that_never_get_latencies_are_placed_at_the_slowest_bound(
    backend: PrometheusMetrics,
) -> None:
    Script.state = {"c": ([counter("c", "503", 0)], buckets("c", [0, 0, 0, 0, 0]))}
    backend.fetch()
    Script.state = {"c": ([counter("c", "503", 5)], buckets("c", [0, 0, 0, 0, 0]))}
    assert backend.fetch().is_empty  # held once
    Script.state = {"c": ([counter("c", "503", 8)], buckets("c", [0, 0, 0, 0, 0]))}
    window = backend.fetch()
    assert window.totals["candidate"].errors == 8
    assert window.samples.latency_ms.tolist() == [50.0] * 8  # conservative: the slowest bound
    assert "8 request(s) above 50 ms placed at it" in window.approximation


def test_no_series_at_all_is_no_data(backend: PrometheusMetrics) -> None:
    backend.fetch()
    window = backend.fetch()
    assert window.is_empty and len(window.samples) == 0
    assert all(t.requests == 0 for t in window.totals.values())  # counted zero, no observations
