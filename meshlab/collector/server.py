"""The collector endpoint: an HTTP server taking logged inferences, and a metrics provider over it.

Routes (``POST`` bodies are parsed by :mod:`meshlab.collector.events`):

``POST /events/baseline``, ``POST /events/candidate``
    events from one version (the rendered KServe logger URL of each version points here);
``POST /events``
    events whose arm comes from their ``inferenceservicename`` (``services`` mapping);
``GET /healthz``
    ``200 ok``.

Bodies need a ``content-length`` (KServe's Go client sends one); chunked bodies are refused.
Answers ``200`` to an accepted event (KServe logs anything else as a failure), ``400`` with a
one-line reason to a bad one, ``413`` above ``max_body`` bytes. The server runs in a daemon thread
of the meshlab process (stdlib ``ThreadingHTTPServer``); :class:`Collector` is also a
:class:`~meshlab.metrics.base.MetricsProvider`, so the controller reads it like Prometheus.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from meshlab.collector.events import EventError, parse
from meshlab.collector.joining import Joiner
from meshlab.collector.kserve import arm_by_service
from meshlab.samples import ARMS, Samples
from meshlab.spec.metrics import CollectorSpec

log = logging.getLogger(__name__)

APPROXIMATION = (
    "predictions from the KServe payload logger, primary and shadow paired by x-request-id; "
    "latency_ms is the gap between logged request and response events (approximate)"
)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], collector: Collector) -> None:
        self.collector = collector
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # One segment per answer: headers and body written apart would meet delayed ACKs (~40 ms).
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    timeout = 30  # seconds a client may take to send its request; frees stuck handler threads

    def _answer(self, status: int, text: str) -> None:
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/healthz":
            self._answer(200, "ok")
        else:
            self._answer(404, "not found; POST events to /events or /events/<arm>")

    def do_POST(self) -> None:
        collector = self.server.collector
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/events":
            arm = None
        elif path.startswith("/events/") and path[len("/events/") :] in ARMS:
            arm = path[len("/events/") :]
        else:
            self._answer(404, "post to /events, /events/baseline or /events/candidate")
            return
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            self.close_connection = True
            self._answer(411, "send a content-length; chunked bodies are not accepted")
            return
        try:
            length = int(self.headers.get("content-length", "0"))
        except ValueError:
            self._answer(400, "bad content-length")
            return
        if length < 0 or length > collector.max_body:
            self.close_connection = True
            self._answer(413, f"body above {collector.max_body} bytes")
            return
        body = self.rfile.read(length)
        try:
            event = parse(
                dict(self.headers.items()),
                body,
                path_arm=arm,
                services=collector.services,
                received_at=time.time(),
            )
        except EventError as exc:
            collector.count_rejected()
            self._answer(400, str(exc))
            return
        collector.joiner.add(event)
        self._answer(200, "ok")

    def log_message(self, format: str, *args: object) -> None:
        log.debug("collector: " + format, *args)


class Collector:
    """The collector endpoint and a metrics provider yielding paired prediction samples."""

    def __init__(
        self,
        joiner: Joiner | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        services: Mapping[str, str] | None = None,
        max_body: int = 4 * 1024 * 1024,
    ) -> None:
        self.name = "collector"
        self.joiner = joiner or Joiner()
        self.services = dict(services or {})
        self.max_body = max_body
        self.rejected = 0  # events answered 400
        self._rejected_lock = threading.Lock()
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("collector not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> str:
        """Bind and serve in a background thread; returns the base URL."""
        if self._server is None:
            self._server = _Server(self._address, self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="meshlab-collector",
                daemon=True,
            )
            self._thread.start()
        return self.url

    def count_rejected(self) -> None:
        with self._rejected_lock:
            self.rejected += 1

    def online(self) -> bool:
        return self._server is not None

    def take(self) -> Samples:
        """Pairs completed since the last call, as Samples (two rows per pair, start-time order)."""
        rows = self.joiner.take()
        return Samples.from_rows(rows)

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Collector:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def collector_from_spec(spec: CollectorSpec, mirrored_arm: str = "candidate") -> Collector:
    """A (not yet started) collector as ``spec.metrics.collector`` configures it."""
    services = (
        arm_by_service(spec.inference_services.model_dump()) if spec.inference_services else {}
    )
    joiner = Joiner(
        mirrored_arm=mirrored_arm, release=spec.release, ttl=spec.ttl, max_pending=spec.max_pending
    )
    return Collector(joiner, host=spec.listen, port=spec.port, services=services)
