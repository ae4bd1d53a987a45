"""The Locust side of meshlab's load: user classes, sample recording and load shapes.

Imported ONLY inside a Locust process (it imports locust, which monkey-patches the process with
gevent); meshlab itself never imports it, it runs the locustfiles in ``loadtests/`` as a child
process. Every request fires Locust's ``request`` event; :class:`SampleRecorder` turns each into a
raw sample row (start time, arm from ``x-meshlab-arm``, exact latency, status with 0 for transport
failures, extracted prediction) and appends it to the spool file named by ``MESHLAB_SAMPLES``.
Workers of a distributed run forward their rows to the master in batches (Locust's custom
messages), so the master's spool holds every worker's requests, each exactly once.
"""

from __future__ import annotations

import atexit
import math
import os
import random
import sys
import time
import uuid
from typing import IO, Any

import gevent
from locust import FastHttpUser, LoadTestShape, constant, constant_throughput, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from meshlab.errors import ConfigError
from meshlab.load.config import (
    CONFIG_ERROR_EXIT,
    CONFIG_ERROR_PREFIX,
    LocustConfig,
    config_from_env,
)
from meshlab.load.inputs import encoded_bodies
from meshlab.load.payloads import make_extractor

ARM_HEADER = "x-meshlab-arm"
MESSAGE = "meshlab_samples"
FLUSH_SECONDS = 0.2
_ARMS = ("baseline", "candidate", "control")


def _on(event: Any, listener: Any) -> None:
    """Add a listener to a Locust event hook (its ``add_listener`` is untyped)."""
    event.add_listener(listener)


def _run_time(shape: LoadTestShape) -> float:
    seconds: float = shape.get_run_time()  # type: ignore[no-untyped-call]
    return seconds


class SampleRecorder:
    """Per-process buffer of sample rows, flushed to the spool (or to the master) every 0.2 s."""

    def __init__(self, config: LocustConfig, extract: Any) -> None:  # extract: bytes -> JSON text
        self.config = config
        self.extract = extract
        # CSV lines, not lists: strings are not tracked by the garbage collector, and thousands of
        # small lists per second made Locust's heap scans cost more than the recording itself.
        self.rows: list[str] = []
        self.environment: Environment | None = None
        self._file: IO[str] | None = None
        # Start times of requests on their way (request id -> time.time() just before sending):
        # the oldest bounds the start of any row not yet recorded, which is the watermark.
        self.in_flight: dict[str, float] = {}
        self.node = "local"
        self._stopped = False

    # -- wiring -------------------------------------------------------------------------------
    def attach(self, environment: Environment) -> None:
        self.environment = environment
        runner = environment.runner
        if isinstance(runner, MasterRunner):
            runner.register_message(MESSAGE, self._on_worker_rows)
            self._open()
        elif isinstance(runner, WorkerRunner):
            self.node = str(runner.client_id)
            _on(environment.events.request, self.on_request)
            _on(environment.events.test_stop, self._on_test_stop)
            _on(environment.events.test_start, self._on_test_start)
            gevent.spawn(self._flush_forever)
        else:
            self._open()
            _on(environment.events.request, self.on_request)
            _on(environment.events.test_stop, self._on_test_stop)
            gevent.spawn(self._flush_forever)
        # Not closed on 'quitting': on SIGTERM Locust fires it *before* stopping users and hearing
        # the workers' last rows. Every write is flushed; the file closes when the process exits.
        _on(environment.events.quitting, lambda **_: self.flush())
        atexit.register(self.close)

    def _on_test_stop(self, **_: Any) -> None:
        self.in_flight.clear()  # users are stopped: what was in flight will never report
        self.flush()
        self._stopped = True

    def _on_test_start(self, **_: Any) -> None:
        self._stopped = False

    def _open(self) -> None:
        if self.config.samples is not None and self._file is None:
            self._file = open(self.config.samples, "a", encoding="utf-8", newline="")  # noqa: SIM115

    # -- recording ----------------------------------------------------------------------------
    def on_request(
        self,
        response_time: float,
        response: Any,
        context: dict[str, Any],
        start_time: float | None = None,
        **_: Any,
    ) -> None:
        request_id = context.get("meshlab_request_id")
        if request_id is None:
            return  # not one of meshlab's requests
        self.in_flight.pop(request_id, None)
        status = int(getattr(response, "status_code", 0) or 0)
        headers = getattr(response, "headers", None)
        arm = (headers.get(ARM_HEADER) or "") if headers else ""
        arm = arm if arm in _ARMS else ""  # unattributed: meshlab keeps these apart
        prediction = ""
        if status:
            try:
                prediction = self.extract(response.content or b"")
            except Exception:  # a body we cannot read has no prediction
                prediction = ""
        started = start_time if start_time is not None else time.time() - response_time / 1000
        if "," in prediction or '"' in prediction:
            prediction = '"' + prediction.replace('"', '""') + '"'  # CSV quoting (JSON has no \n)
        self.rows.append(
            f"{started!r},{arm},{request_id},{response_time:.3f},{status},{prediction},0\n"
        )

    def _on_worker_rows(self, environment: Environment, msg: Any, **_: Any) -> None:
        self._write(msg.data["rows"], msg.data["node"], msg.data["watermark"])

    def _write(self, rows: list[str], node: str, watermark: float) -> None:
        """Rows, then a ``#,node,watermark`` line: no later row of ``node`` starts before it."""
        if self._file is not None:
            self._file.write("".join(rows) + f"#,{node},{watermark!r}\n")
            self._file.flush()

    def watermark(self) -> float:
        """The start time no request still unrecorded can precede.

        A request killed in flight (users stopped) never reports; after ``timeout + 1`` s its
        entry is dropped, so it cannot hold the stream back (if it does report, it is late).
        """
        now = time.time()
        cutoff = now - self.config.timeout - 1.0
        for rid in [r for r, t in self.in_flight.items() if t < cutoff]:
            del self.in_flight[rid]
        return min(self.in_flight.values(), default=now)

    def flush(self) -> None:
        runner = self.environment.runner if self.environment else None
        if isinstance(runner, MasterRunner):
            return  # the master sends no requests; it only writes what workers send
        # No gevent switch between taking the rows and the watermark, so they agree.
        rows, self.rows = self.rows, []
        mark = self.watermark()
        if isinstance(runner, WorkerRunner):
            if not rows and self._stopped:
                return  # after the final flush: a message to a master that quit would hang exit
            runner.send_message(MESSAGE, {"rows": rows, "node": self.node, "watermark": mark})
        else:
            self._write(rows, self.node, mark)

    def _flush_forever(self) -> None:
        while True:
            gevent.sleep(FLUSH_SECONDS)
            self.flush()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


_active: dict[str, Any] = {}


def active_config() -> LocustConfig:
    """The config of this Locust process (read from the environment on first use)."""
    if "config" not in _active:
        _active["config"] = config_from_env(os.environ)
    config: LocustConfig = _active["config"]
    return config


def setup(protocol: str | None = None) -> type[FastHttpUser]:
    """Read the config (``protocol`` pins it), start recording if asked, return the user class.

    A locustfile calls this once and subclasses the result with ``abstract = False``.
    """
    try:
        config = config_from_env(os.environ, protocol=protocol)
        bodies = encoded_bodies(config) if config.payloads is not None else None
    except ConfigError as exc:
        # One line meshlab's runner finds in the log and reports as bad input (exit 2).
        sys.stderr.write(f"{CONFIG_ERROR_PREFIX}{exc}\n")
        sys.stderr.flush()
        raise SystemExit(CONFIG_ERROR_EXIT) from None
    del bodies  # encoded again by make_user; read here only to fail before Locust starts
    _active["config"] = config
    if config.samples is not None and "recorder" not in _active:
        new = SampleRecorder(config, make_extractor(config.extractor))
        _active["recorder"] = new
        _on(events.init, lambda environment, **_: new.attach(environment))
    recorder: SampleRecorder | None = _active.get("recorder")
    return make_user(config, recorder.in_flight if recorder is not None else None)


def load_bodies(config: LocustConfig) -> list[bytes]:
    """The encoded request bodies of ``config``'s dataset (and template)."""
    if config.payloads is None:
        raise SystemExit("meshlab: no payload file; set MESHLAB_PAYLOADS=data.jsonl (or .csv)")
    return encoded_bodies(config)


def _variant_headers(variants: list[tuple[float, dict[str, str]]]) -> dict[str, str]:
    """The extra headers of the variant this request falls in ({} for the plain share)."""
    draw = random.random()
    for share, extra in variants:
        if draw < share:
            return extra
        draw -= share
    return {}


def make_user(
    config: LocustConfig, in_flight: dict[str, float] | None = None
) -> type[FastHttpUser]:
    """A FastHttpUser class that POSTs ``config``'s payloads at its per-user constant throughput.

    With ``in_flight``, each request's start is noted there until the recorder sees it complete.
    """
    bodies = load_bodies(config)
    per_user = config.user_rps
    headers = {"content-type": "application/json", "accept": "application/json", **config.headers}

    class InferenceUser(FastHttpUser):
        abstract = True
        network_timeout = config.timeout
        connection_timeout = config.timeout
        wait_time = constant(0) if per_user is None else constant_throughput(per_user)

        def on_start(self) -> None:
            # A random phase per user, so users do not fire in lockstep and the rate is smooth.
            if per_user is not None:
                gevent.sleep(random.uniform(0, 1 / per_user))
            self._next = random.randrange(len(bodies))

        @task
        def infer(self) -> None:
            body = bodies[self._next]
            self._next = (self._next + 1) % len(bodies)
            request_id = uuid.uuid4().hex
            sent = {**headers, "x-request-id": request_id, **_variant_headers(config.variants)}
            if in_flight is not None:
                in_flight[request_id] = time.time()
            self.client.request(
                "POST",
                config.path,
                data=body,  # type: ignore[arg-type]  # geventhttpclient sends bytes as is
                name=config.path,
                headers=sent,
                context={"meshlab_request_id": request_id},
            )

    return InferenceUser


class StepsShape(LoadTestShape):
    """Hold each ``(rps, seconds)`` of the config's ``steps`` in turn, then stop."""

    abstract = True

    def tick(self) -> tuple[int, float] | None:
        elapsed = _run_time(self)
        config = active_config()
        for rps, seconds in config.steps:
            if elapsed < seconds:
                return config.users_for(rps), _SPAWN_RATE
            elapsed -= seconds
        return None


class RampShape(LoadTestShape):
    """Raise (or lower) the rate linearly, one level every ``step_every`` seconds, then stop."""

    abstract = True

    def tick(self) -> tuple[int, float] | None:
        config = active_config()
        if config.ramp is None:
            return None
        start, end, seconds, every = config.ramp
        elapsed = _run_time(self)
        if elapsed >= seconds:
            return None
        level = math.floor(elapsed / every) * every / seconds
        return config.users_for(max(start + (end - start) * level, 1e-9)), _SPAWN_RATE


_SPAWN_RATE = 1000.0  # users start almost at once: the rate is set by their throughput, not spawn
