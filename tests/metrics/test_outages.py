"""Prometheus failures classified once: the exact failure shapes, against a loopback stand-in.

A real Prometheus cannot be made to cut a body mid-way, answer 401 or hang on demand, so a loopback
HTTP server (``Shapes``) answers each query with the next scripted shape; everything else
(requests, prometheus-api-client, the classification, the hold/abort policy) is the real code.
``test_prometheus_outages_real.py`` repeats what a real Prometheus can show (frozen, gone, 400).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from meshlab.errors import MetricsError, PermanentMetricsError, RetryableMetricsError
from meshlab.metrics import (
    ENVOY,
    MetricsUnavailableError,
    Outage,
    OutageStatus,
    PrometheusLiveSamples,
    PrometheusMetrics,
    fetch_or_hold,
    from_experiment,
)
from meshlab.samples import Sample
from tests.metrics.conftest import CLUSTERS, free_port

ARMS = {arm: {"arm": c} for arm, c in CLUSTERS.items()}
OK_BODY = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}})
BAD_QUERY = json.dumps(
    {
        "status": "error",
        "errorType": "bad_data",
        "error": 'invalid parameter "query": 1:5: parse error',
    }
)


class Shapes(BaseHTTPRequestHandler):
    """Answers each request with the next scripted shape ("ok" once the script is used up)."""

    protocol_version = "HTTP/1.1"
    script: ClassVar[list[str]] = []
    seen: ClassVar[list[str]] = []
    release: ClassVar[threading.Event] = threading.Event()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, status: int, body: str, length: int | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data) if length is None else length))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        shape = self.script.pop(0) if self.script else "ok"
        self.seen.append(shape)
        if shape == "ok":
            self._answer(200, OK_BODY)
        elif shape == "truncated":  # promises more bytes than it sends, then hangs up
            self._answer(200, OK_BODY[:20], length=len(OK_BODY))
            self.close_connection = True
        elif shape == "chunked-cut":  # one chunk, then the connection drops
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"14\r\n" + OK_BODY[:20].encode() + b"\r\n")
            self.close_connection = True
        elif shape == "close":  # reads the request, closes without a word
            self.close_connection = True
        elif shape == "hang":  # accepts, reads, never answers (a frozen Prometheus)
            self.release.wait(30)
            self.close_connection = True
        elif shape == "slow":  # answers, but only after 0.3 s
            time.sleep(0.3)
            self._answer(200, OK_BODY)
        elif shape == "garbage":
            self._answer(200, "<html>Grafana</html>")
        elif shape == "400":
            self._answer(400, BAD_QUERY)
        else:
            self._answer(int(shape), json.dumps({"status": "error", "error": "nope"}))


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # the client gave up on a hanging or slow answer: a broken pipe is the point


@pytest.fixture
def shapes() -> Iterator[str]:
    Shapes.script, Shapes.seen = [], []
    Shapes.release = threading.Event()
    server = QuietServer(("127.0.0.1", 0), Shapes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        Shapes.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def backend(url: str, timeout: float = 1.0) -> PrometheusMetrics:
    return PrometheusMetrics(url, ENVOY, ARMS, timeout=timeout)


SHAPES = [
    # (shape, class, message)
    ("truncated", RetryableMetricsError, r"cut off its answer|unreachable \(connection broken"),
    ("chunked-cut", RetryableMetricsError, r"cut off its answer|unreachable \(connection broken"),
    ("close", RetryableMetricsError, r"unreachable \(connection closed without an answer\)"),
    ("hang", RetryableMetricsError, r"did not answer .* within the query timeout \(1s"),
    ("503", RetryableMetricsError, r"answered HTTP 503 .*; holding"),
    ("502", RetryableMetricsError, r"answered HTTP 502"),
    ("429", RetryableMetricsError, r"answered HTTP 429"),
    ("401", PermanentMetricsError, r"HTTP 401, check the token: check the bearer token"),
    ("403", PermanentMetricsError, r"HTTP 403, check the token"),
    ("400", PermanentMetricsError, r"rejected .* as bad \(HTTP 400: invalid parameter .*parse err"),
    ("404", PermanentMetricsError, r"^spec.metrics.prometheus.url: .* answered HTTP 404"),
    ("garbage", PermanentMetricsError, r"^spec.metrics.prometheus.url: .* not Prometheus"),
]


@pytest.mark.parametrize(("shape", "kind", "message"), SHAPES)
def test_each_failure_shape_is_classified_once(
    shapes: str, shape: str, kind: type[MetricsError], message: str
) -> None:
    prom = backend(shapes)
    try:
        Shapes.script = [shape]
        started = time.monotonic()
        with pytest.raises(MetricsError, match=message) as caught:
            prom.fetch()
        assert type(caught.value) is kind
        assert "\n" not in str(caught.value)
        assert caught.value.__cause__ is None and caught.value.__context__ is None
        assert time.monotonic() - started < 1.0 + 0.8  # one query timeout at most
        assert Shapes.seen == [shape]  # the first failure ends the look: no further queries
    finally:
        prom.close()


def test_an_unreadable_body_after_good_answers_is_a_cut_off_answer_not_a_wrong_url(
    shapes: str,
) -> None:
    prom = backend(shapes)
    try:
        prom.fetch()  # four good answers
        Shapes.script = ["garbage"]
        with pytest.raises(RetryableMetricsError, match="unreadable answer"):
            prom.fetch()
    finally:
        prom.close()


def test_connection_refused_is_transient() -> None:
    prom = backend(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(RetryableMetricsError, match=r"unreachable \(connection refused\)"):
            prom.fetch()
    finally:
        prom.close()


def test_check_says_why_prometheus_does_not_answer(shapes: str) -> None:
    prom = backend(shapes)
    try:
        prom.check()
        Shapes.script = ["401"]
        with pytest.raises(PermanentMetricsError, match="check the token"):
            prom.check()
        Shapes.script = ["401"]
        assert not prom.online()
    finally:
        prom.close()


def test_one_look_s_queries_share_one_query_timeout(shapes: str) -> None:
    """Four queries of 0.3 s each fit a 0.5 s timeout one by one, but not as one look."""
    prom = backend(shapes, timeout=0.5)
    try:
        Shapes.script = ["slow"] * 4
        started = time.monotonic()
        with pytest.raises(RetryableMetricsError, match="within the query timeout"):
            prom.fetch()
        took = time.monotonic() - started
        print(f"look of slow queries gave up after {took:.2f}s (queryTimeout 0.5s)")
        assert 0.4 < took < 0.5 + 0.5
        assert Shapes.seen == ["slow", "slow"]  # the third query never started
        Shapes.script = ["hang"]
        started = time.monotonic()
        with pytest.raises(RetryableMetricsError, match="within the query timeout"):
            prom.fetch()
        assert time.monotonic() - started < 0.5 + 0.5
    finally:
        prom.close()


class IdleLoad:
    """The load generator as the live source sees it: running, nothing to report."""

    finished = False

    def poll(self, timeout: float) -> list[Sample]:
        return []

    def stop(self) -> None:
        pass


def test_the_grace_clock_starts_at_the_first_failed_query_and_a_freeze_adds_one_timeout(
    shapes: str,
) -> None:
    grace, query_timeout = 1.0, 0.5
    prom = backend(shapes, timeout=query_timeout)
    Shapes.script = ["hang"] * 100
    live = PrometheusLiveSamples(
        prom, IdleLoad(), interval=30.0, outage=Outage(grace), settle=0.0
    )  # a look every 30 s: only the grace deadline can bring the abort on time
    try:
        first_query = time.time()
        started = time.monotonic()
        status: OutageStatus | None = None
        with pytest.raises(MetricsUnavailableError) as caught:
            while time.monotonic() - started < 10:
                live.poll(0.05)
                status = live.outage_status or status
        took = time.monotonic() - started
        print(f"frozen Prometheus: abort {took:.2f}s after the first query (grace {grace}s)")
        assert grace < took <= grace + query_timeout + 0.5  # 0.5: scheduling on a busy machine
        assert status is not None and abs(status.since - first_query) < 0.2
        assert caught.value.status is not None
        assert caught.value.status.describe().startswith(
            f"Prometheus at {shapes} unreachable since 20"
        )
        assert "queryTimeout" in caught.value.status.last_error
    finally:
        prom.close()


def test_after_rollback_a_dead_source_never_fails_the_drain(shapes: str) -> None:
    prom = backend(shapes, timeout=0.5)
    now = [0.0]
    live = PrometheusLiveSamples(
        prom,
        IdleLoad(),
        interval=1.0,
        outage=Outage(5.0, clock=lambda: now[0]),
        clock=lambda: now[0],
        sleep=lambda s: None,
    )
    try:
        assert live.poll(0.1) == []  # marks the start
        Shapes.script = ["503"] * 50
        now[0] = 1.0
        assert live.poll(0.1) == []  # held
        assert live.outage_status is not None and live.outage_status.failures == 1
        live.after_rollback()
        asked = len(Shapes.seen)
        now[0] = 100.0  # far beyond the grace period: before the rollback this would raise
        assert live.poll(0.1) == []
        assert live.finished  # the drain loop ends at once
        assert len(Shapes.seen) == asked  # and the dead source was not even queried
    finally:
        prom.close()


def test_after_rollback_a_permanent_failure_is_recorded_not_raised(shapes: str) -> None:
    prom = backend(shapes)
    live = PrometheusLiveSamples(prom, IdleLoad(), interval=0.01, outage=Outage(5.0))
    try:
        assert live.poll(0.0) == []
        live.after_rollback()
        time.sleep(0.02)
        Shapes.script = ["401"]
        assert live.poll(0.0) == []
        assert live.finished and "check the token" in live.errors_after_rollback[0]
    finally:
        prom.close()


def test_outage_status_reads_as_a_sentence() -> None:
    clock, wall = [10.0], [1_800_000_000.0]
    outage = Outage(60, clock=lambda: clock[0], wall=lambda: wall[0])
    assert outage.status("Prometheus at http://p:9090") is None
    outage.failed(began=8.0, error="connection refused")  # the query began 2 s ago
    outage.failed(error="HTTP 503")
    status = outage.status("Prometheus at http://p:9090")
    assert status == OutageStatus("Prometheus at http://p:9090", wall[0] - 2.0, 2, "HTTP 503", 60)
    assert status.describe() == (
        "Prometheus at http://p:9090 unreachable since 2027-01-15T07:59:58Z "
        "(2 failed looks; last: HTTP 503)"
    )
    assert outage.deadline == 68.0
    outage.succeeded()
    assert outage.status("x") is None and outage.deadline is None


def test_fetch_or_hold_dates_the_outage_from_the_start_of_the_failed_fetch() -> None:
    clock = [0.0]

    class Slow:
        name = "slow"

        def online(self) -> bool:
            return False

        def fetch(self) -> object:
            clock[0] += 5.0  # the query timed out after 5 s
            raise RetryableMetricsError("timed out")

        def close(self) -> None:
            pass

    outage = Outage(8.0, clock=lambda: clock[0])
    assert fetch_or_hold(Slow(), outage) is None  # type: ignore[arg-type]
    assert outage.since == 0.0  # not 5.0: the grace period began with the failed query
    with pytest.raises(MetricsUnavailableError, match="unreachable for 10s"):
        fetch_or_hold(Slow(), outage)  # type: ignore[arg-type]


def test_query_timeout_comes_from_the_spec() -> None:
    from tests.mesh.conftest import example

    exp = example(
        "canary.yaml",
        metrics={"source": "prometheus", "prometheus": {"queryTimeout": "1500ms"}},
    )
    prom = from_experiment(exp)
    try:
        assert prom.query_timeout == 1.5
        assert from_experiment(example("canary.yaml")).query_timeout == 5.0
    finally:
        prom.close()
