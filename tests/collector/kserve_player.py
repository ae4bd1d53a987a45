"""Both versions of a KServe model, with their payload loggers, in one loopback process (tests).

A cluster shadow test has the baseline answer every request while Istio mirrors a copy to the
candidate and drops its answer; each version's KServe agent logs request and response as
CloudEvents to meshlab's collector. No cluster runs here, so this process plays that part:

* it answers the load generator as the baseline (V2 protocol, ``x-meshlab-arm: baseline``);
* for every request it logs, for both versions, a request and a response CloudEvent built by the
  ``cloudevents`` SDK in binary mode with KServe's attributes (``ce-inferenceservicename``,
  ``ce-namespace``, ``ce-component``, ``ce-endpoint``, ``ce-metadata`` carrying ``X-Request-Id``;
  one ``ce-id`` per version and request, as KServe's agent makes), posted to
  ``<collector>/events/<arm>`` by a pool of sender threads, as KServe's logger workers do.

``--candidate good`` predicts what the baseline does; ``broken`` has broken preprocessing (a
feature dropped and the rest rescaled, so its scores differ); ``stops`` is good but its logger
stops sending ``--stop-after`` seconds after the first request (the baseline's logger keeps going).
``--control`` adds a control arm (issue 13): a second copy of the baseline's version, mirrored
beside the candidate, whose agent logs as InferenceService ``fraud-v1-control`` to
``/events/control``. Prints ``PORT <n>`` once it listens. Standard library plus ``cloudevents``
and ``httpx``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from cloudevents.core.bindings.http import to_binary_event
from cloudevents.core.v1.event import CloudEvent

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"


def kserve_event(
    kind: str, ce_id: str, request_id: str, data: Any, *, service: str, at: datetime
) -> CloudEvent:
    """An event shaped like KServe's agent sends (pkg/logger/worker.go)."""
    return CloudEvent(
        {
            "id": ce_id,
            "type": REQUEST_TYPE if kind == "request" else RESPONSE_TYPE,
            "source": "http://localhost:9081/",
            "specversion": "1.0",
            "time": at,
            "datacontenttype": "application/json",
            "inferenceservicename": service,
            "namespace": "models",
            "component": "predictor",
            "endpoint": "",
            "metadata": json.dumps({"X-Request-Id": [request_id]}),
        },
        data,
    )


def _inputs(body: Any) -> list[float]:
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list) or not inputs or not isinstance(inputs[0], dict):
        return []
    data = inputs[0].get("data") or []
    flat: list[float] = []
    for x in data:
        flat.extend(x if isinstance(x, list) else [x])
    return [float(v) for v in flat if isinstance(v, int | float)]


def score(features: list[float], broken: bool) -> float:
    """The model: a fixed linear score. Broken preprocessing drops the last feature and rescales."""
    if broken:
        features = [v * 1.5 for v in features[:-1]]
    return round(sum((i % 7 - 3) * v for i, v in enumerate(features)) / 100.0, 6)


def v2_response(name: str, value: float) -> dict[str, Any]:
    return {
        "model_name": name,
        "outputs": [{"name": "output-0", "shape": [1], "datatype": "FP64", "data": [value]}],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collector", required=True, help="the collector's base URL")
    parser.add_argument("--candidate", choices=("good", "broken", "stops"), default="good")
    parser.add_argument("--stop-after", type=float, default=3.0)
    parser.add_argument("--latency-ms", type=float, default=4.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control", action="store_true", help="also play a mirrored control")
    args = parser.parse_args(argv)
    first: list[float] = []  # when the first request came: --stop-after counts from there
    outbox: queue.Queue[tuple[str, CloudEvent] | None] = queue.Queue(maxsize=10_000)

    def send() -> None:
        with httpx.Client(base_url=args.collector, timeout=5) as client:
            while (item := outbox.get()) is not None:
                path, event = item
                message = to_binary_event(event)
                # KServe's agent logs a failed delivery and moves on
                with contextlib.suppress(httpx.HTTPError):
                    client.post(path, headers=message.headers, content=message.body)

    senders = [threading.Thread(target=send, daemon=True) for _ in range(4)]
    for thread in senders:
        thread.start()

    def log(arm: str, request_id: str, body: Any, answer: Any, at: datetime) -> None:
        service = {"baseline": "fraud-v1", "control": "fraud-v1-control"}.get(arm, "fraud-v2")
        ce_id = str(uuid.uuid4())
        done = at + timedelta(milliseconds=args.latency_ms)
        for kind, data, when in (("request", body, at), ("response", answer, done)):
            event = kserve_event(kind, ce_id, request_id, data, service=service, at=when)
            outbox.put((f"/events/{arm}", event))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *a: Any) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            at = datetime.now(UTC)
            try:
                body = json.loads(raw)
            except ValueError:
                self._send(400, {"error": "body is not JSON"})
                return
            name = self.path.split("/")[3] if self.path.startswith("/v2/models/") else "model"
            features = _inputs(body)
            answer = v2_response(name, score(features, broken=False))
            request_id = self.headers.get("x-request-id") or str(uuid.uuid4())
            log("baseline", request_id, body, answer, at)
            if not first:
                first.append(time.monotonic())
            quiet = time.monotonic() - first[0] >= args.stop_after
            logging = args.candidate != "stops" or not quiet
            if logging:  # the mirrored copy, answered by the candidate and logged by its agent
                shadow = v2_response(name, score(features, broken=args.candidate == "broken"))
                log("candidate", request_id, body, shadow, at)
            if args.control:  # the control's copy: the baseline's version, its own agent
                log("control", request_id, body, answer, at)
            time.sleep(args.latency_ms / 1000)
            self._send(200, answer)

        def do_GET(self) -> None:
            self._send(200, {"ready": True})

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("x-meshlab-arm", "baseline")
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        for _ in senders:
            outbox.put(None)


if __name__ == "__main__":
    main(sys.argv[1:])
