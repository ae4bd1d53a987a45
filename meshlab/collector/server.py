"""The collector endpoint: logged inferences in, joined samples out, and a metrics provider over it.

Routes (``POST`` bodies are parsed by :mod:`meshlab.collector.events`):

``POST /events/baseline``, ``POST /events/candidate``, ``POST /events/control`` (spec.control)
    events from one version (the rendered KServe logger URL of each version points here);
``POST /events``
    events whose arm comes from their ``inferenceservicename`` (``services`` mapping);
``GET /healthz``
    ``200 ok`` (no token needed: it reveals nothing, and probes carry none).

Answers ``200`` to an accepted event (KServe logs anything else as a failure), ``400`` with a
one-line reason to a bad one, ``401`` without the bearer token, ``413`` above ``max_body`` bytes,
``503`` when the memory budget is full. The HTTP side (deadlines, connection cap, buffering
budget, TLS) is :mod:`meshlab.collector.listener`; who may post is :mod:`meshlab.collector.auth`.
It binds loopback by default and refuses to listen anywhere else without a token.
:class:`Collector` is also a :class:`~meshlab.metrics.base.MetricsProvider`, so the controller
reads it like Prometheus.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Mapping
from types import TracebackType

from meshlab.collector.auth import Token, auth_from_spec, require_token_beyond_loopback
from meshlab.collector.counts import CollectorCounts, RejectionCounter, Rejections
from meshlab.collector.events import EventError, parse
from meshlab.collector.joining import Joiner
from meshlab.collector.listener import Limits, Listener
from meshlab.collector.safejson import DEFAULT_MAX_DEPTH
from meshlab.manifests.kserve import arm_by_service
from meshlab.samples import ALL_ARMS, Samples
from meshlab.spec.metrics import CollectorSpec

APPROXIMATION = (
    "predictions from the KServe payload logger, primary and shadow paired by x-request-id; "
    "latency_ms is the gap between logged request and response events (approximate)"
)
EVENT_PATHS = frozenset({"/events", *(f"/events/{arm}" for arm in ALL_ARMS)})


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
        token: Token | None = None,
        ssl_context: ssl.SSLContext | None = None,
        limits: Limits | None = None,
        max_json_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        require_token_beyond_loopback(host, token)
        self.name = "collector"
        self.joiner = joiner or Joiner()
        self.services = dict(services or {})
        self.limits = limits or Limits(max_body=max_body, buffer_budget=max(max_body, 32 << 20))
        self.max_body = self.limits.max_body
        self.max_json_depth = max_json_depth
        self.token = token
        self.ssl_context = ssl_context
        self._rejections = RejectionCounter()
        self._listener = Listener(host, port, self, self._rejections, self.limits, ssl_context)
        self._started = False

    @property
    def url(self) -> str:
        address = self._listener.address
        if not self._started or address is None:
            raise RuntimeError("collector not started")
        host = f"[{address[0]}]" if ":" in address[0] else address[0]
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{address[1]}"

    def start(self) -> str:
        """Bind and serve in a background thread; returns the base URL."""
        if not self._started:
            self._listener.start()
            self._started = True
        return self.url

    # -- Handler (called by the listener) -----------------------------------------------------

    def health(self, path: str) -> tuple[int, str] | None:
        return (200, "ok") if path == "/healthz" else None

    def refusal(self, method: str, path: str, authorization: bytes | None) -> tuple[int, str, str]:
        if path not in EVENT_PATHS:
            return 404, "post to /events or /events/<baseline|candidate|control>", "not_found"
        if method != "POST":
            return 405, "POST events; GET only /healthz", "method_not_allowed"
        if self.token is not None and not self.token.matches(authorization):
            if authorization is None:
                return 401, "send Authorization: Bearer <collector token>", "missing_token"
            return 401, "the bearer token does not match the collector's", "invalid_token"
        return 0, "", ""

    def handle(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, str]:
        arm = path[len("/events/") :] if path.startswith("/events/") else None
        try:
            event = parse(
                headers,
                body,
                path_arm=arm,
                services=self.services,
                received_at=time.time(),
                max_depth=self.max_json_depth,
            )
            self.joiner.add(event)
        except EventError as exc:
            self._rejections.count(exc.reason)
            return (503 if exc.reason == "memory_budget" else 400), str(exc)
        return 200, "ok"

    # -- what the run reads ------------------------------------------------------------------

    @property
    def rejected(self) -> int:
        """All refused requests, whatever the reason."""
        return self._rejections.snapshot().total

    def rejections(self) -> Rejections:
        return self._rejections.snapshot()

    def counts(self) -> CollectorCounts:
        """Refusals by reason, join counters and memory held, for the run report."""
        return CollectorCounts(
            rejections=self._rejections.snapshot(),
            joins=self.joiner.stats.copy(),
            pending=self.joiner.pending,
            held_bytes=self.joiner.held_bytes,
            memory_budget=self.joiner.memory_budget,
        )

    def online(self) -> bool:
        return self._started

    def take(self) -> Samples:
        """Pairs completed since the last call, as Samples (two rows per pair, start-time order)."""
        return Samples.from_rows(self.joiner.take())

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._started:
            self._listener.close()
        self._started = False

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


def collector_from_spec(
    spec: CollectorSpec,
    mirrored_arm: str = "candidate",
    environ: Mapping[str, str] | None = None,
    control: bool = False,
) -> Collector:
    """A (not yet started) collector as ``spec.metrics.collector`` configures it.

    Reads the token (``ConfigError`` naming the field when it is named but missing) and refuses
    a listener beyond loopback without one. ``control``: join the control's mirrored copies too.
    """
    token, ssl_context = auth_from_spec(spec, environ)
    services = (
        arm_by_service(spec.inference_services.model_dump(exclude_none=True))
        if spec.inference_services
        else {}
    )
    joiner = Joiner(
        mirrored_arm=mirrored_arm,
        control=control,
        release=spec.release,
        ttl=spec.ttl,
        max_pending=spec.max_pending,
        memory_budget=spec.memory_budget,
    )
    limits = Limits(
        max_body=spec.max_body,
        buffer_budget=spec.buffer_budget,
        request_timeout=spec.request_timeout,
        max_connections=spec.max_connections,
        workers=spec.workers,
    )
    return Collector(
        joiner,
        host=spec.listen,
        port=spec.port,
        services=services,
        token=token,
        ssl_context=ssl_context,
        limits=limits,
        max_json_depth=spec.max_json_depth,
    )
