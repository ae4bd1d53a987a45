"""A real sample model server: scikit-learn on the breast-cancer dataset, over OIP V2 and KServe V1.

The model is trained at startup (milliseconds) on ``sklearn.datasets.load_breast_cancer``, which
ships inside scikit-learn, so nothing is downloaded. Versions:

* ``baseline``: standardized features -> logistic regression;
* ``good``: standardized features -> RBF support-vector machine, a different model that disagrees
  with the baseline on under 1% of the dataset;
* ``bad``: the ``good`` model, with faults switched on by flags or environment variables.

Faults (any version): ``--latency-ms`` / ``MODEL_LATENCY_MS`` adds latency, ``--error-rate`` /
``MODEL_ERROR_RATE`` answers that share of inferences with HTTP 500, ``--broken-preprocessing`` /
``MODEL_BROKEN_PREPROCESSING=1`` skips standardization (predictions change on most rows).

Faults that develop during a run, timed from the first inference request:

* a slow degradation: ``--ramp-seconds S`` / ``MODEL_RAMP_SECONDS`` with ``--ramp-latency-ms L`` /
  ``MODEL_RAMP_LATENCY_MS`` and ``--ramp-error-rate P`` / ``MODEL_RAMP_ERROR_RATE``: t seconds in,
  the added latency is ``L * min(1, t/S)`` and the 5xx share ``P * min(1, t/S)`` (on top of the
  fixed ``--latency-ms`` and ``--error-rate``);
* ``--hang-after S`` / ``MODEL_HANG_AFTER``: from S seconds on, no request gets an answer (health
  checks included) although connections are still accepted, like a deadlocked server;
* ``--crash-after S`` / ``MODEL_CRASH_AFTER``: the process exits with code 1 after S seconds.

Endpoints (Open Inference Protocol V2 and KServe V1)::

    GET  /v2/health/live   /v2/health/ready   /v2/models/{name}   /v2/models/{name}/ready
    POST /v2/models/{name}/infer      {"inputs": [{"name", "shape": [n, 30], "datatype", "data"}]}
    GET  /v1/models/{name}
    POST /v1/models/{name}:predict    {"instances": [[30 numbers], ...]}

Run: ``python examples/models/serve.py --version good --port 9001``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import sklearn
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

N_FEATURES = 30
VERSIONS = ("baseline", "good", "bad")


def train(version: str, seed: int = 0) -> Pipeline:
    """Fit the version's pipeline on the training split (deterministic for a given seed)."""
    features, labels = load_breast_cancer(return_X_y=True)
    x_train, _, y_train, _ = train_test_split(
        features, labels, test_size=0.3, random_state=seed, stratify=labels
    )
    classifier: Any = (
        LogisticRegression(C=1.0, max_iter=1000) if version == "baseline" else SVC(C=1.0)
    )
    return Pipeline([("scale", StandardScaler()), ("model", classifier)]).fit(x_train, y_train)


class Model:
    """A fitted pipeline plus the faults this process was told to inject."""

    def __init__(
        self,
        name: str,
        version: str,
        latency_ms: float,
        error_rate: float,
        broken_preprocessing: bool,
        seed: int,
        ramp: tuple[float, float, float] = (0.0, 0.0, 0.0),
        hang_after: float | None = None,
        crash_after: float | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.pipeline = train(version)
        self.latency_ms = latency_ms
        self.error_rate = error_rate
        self.broken = broken_preprocessing
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.ramp_seconds, self.ramp_latency_ms, self.ramp_error_rate = ramp
        self.hang_after = hang_after
        self.crash_after = crash_after
        self.first_inference: float | None = None  # monotonic time; the developing faults' clock
        self.never = threading.Event()  # what a hung request waits on (nobody sets it)

    def started(self) -> None:
        """Called on every inference request: the first one starts the faults' clock."""
        with self._lock:
            if self.first_inference is not None:
                return
            self.first_inference = time.monotonic()
        if self.crash_after is not None:
            timer = threading.Timer(self.crash_after, _crash)
            timer.daemon = True
            timer.start()

    def ramp_level(self) -> float:
        """How far the ramp has gone, 0 (not started) to 1 (full)."""
        if self.ramp_seconds <= 0 or self.first_inference is None:
            return 0.0
        return min(1.0, (time.monotonic() - self.first_inference) / self.ramp_seconds)

    def hung(self) -> bool:
        return (
            self.hang_after is not None
            and self.first_inference is not None
            and time.monotonic() - self.first_inference >= self.hang_after
        )

    def current_latency_ms(self) -> float:
        return self.latency_ms + self.ramp_latency_ms * self.ramp_level()

    def fails(self) -> bool:
        rate = min(1.0, self.error_rate + self.ramp_error_rate * self.ramp_level())
        with self._lock:
            return self._random.random() < rate

    def predict(self, rows: np.ndarray) -> list[int]:
        if self.broken:  # the bug: raw features fed to a model trained on standardized ones
            return [int(v) for v in self.pipeline.named_steps["model"].predict(rows)]
        return [int(v) for v in self.pipeline.predict(rows)]


def _crash() -> None:
    print("injected crash (--crash-after): exiting with code 1", flush=True)
    os._exit(1)


def _rows(data: Any, shape: Any) -> np.ndarray:
    array = np.asarray(data, dtype=np.float64)
    if isinstance(shape, list) and shape:
        array = array.reshape([int(s) for s in shape])
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2 or array.shape[1] != N_FEATURES:
        raise ValueError(f"expected rows of {N_FEATURES} features, got shape {list(array.shape)}")
    return array


class Handler(BaseHTTPRequestHandler):
    """One request; keep-alive HTTP/1.1 so Envoy reuses its upstream connections."""

    protocol_version = "HTTP/1.1"
    # Headers and body are two writes; without TCP_NODELAY the body waits for a delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    model: Model  # set on the subclass built by ``serve``

    def log_message(self, format: str, *args: Any) -> None:
        return  # access logs would cost more than the inference

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.model.hung():
            self.model.never.wait()  # keep the connection open, never answer
            return
        name = self.model.name
        path = self.path.split("?", 1)[0]
        if path in ("/v2/health/live", "/v2/health/ready", "/", "/healthz"):
            self._send(200, {"live": True, "ready": True})
        elif path in (f"/v2/models/{name}", f"/v2/models/{name}/ready"):
            self._send(
                200,
                {
                    "name": name,
                    "versions": [self.model.version],
                    "platform": "scikit-learn",
                    "ready": True,
                    "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, N_FEATURES]}],
                    "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}],
                },
            )
        elif path == f"/v1/models/{name}":
            self._send(200, {"name": name, "ready": True})
        else:
            self._send(404, {"error": f"no route {path}; the model is named '{name}'"})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        name = self.model.name
        path = self.path.split("?", 1)[0]
        if path not in (f"/v2/models/{name}/infer", f"/v1/models/{name}:predict"):
            self._send(404, {"error": f"no route {path}; the model is named '{name}'"})
            return
        self.model.started()
        if self.model.hung():
            self.model.never.wait()
            return
        latency_ms = self.model.current_latency_ms()
        if latency_ms > 0:
            time.sleep(latency_ms / 1000.0)
        if self.model.fails():
            self._send(500, {"error": "injected fault (--error-rate / --ramp-error-rate)"})
            return
        try:
            body = json.loads(raw or b"{}")
            if path.startswith("/v2/"):
                first = body["inputs"][0]
                rows = _rows(first["data"], first.get("shape"))
            else:
                rows = _rows(body["instances"], None)
            predictions = self.model.predict(rows)
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            self._send(400, {"error": f"bad request: {exc}"})
            return
        if path.startswith("/v1/"):
            self._send(200, {"predictions": predictions})
            return
        self._send(
            200,
            {
                "model_name": name,
                "model_version": self.model.version,
                "id": str(body.get("id") or uuid.uuid4()),
                "outputs": [
                    {
                        "name": "predict",
                        "shape": [len(predictions)],
                        "datatype": "INT64",
                        "data": predictions,
                    }
                ],
            },
        )


def serve(model: Model, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT."""
    handler = type("BoundHandler", (Handler,), {"model": model})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"serving {model.name} ({model.version}) on http://{host}:{port}", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _env_float(name: str, default: float | None) -> float | None:
    text = os.environ.get(name, "").strip()
    return float(text) if text else default


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--version", choices=VERSIONS, required=True)
    parser.add_argument("--name", default="breast-cancer", help="model name in the URL paths")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--latency-ms", type=float, default=float(os.environ.get("MODEL_LATENCY_MS", "0"))
    )
    parser.add_argument(
        "--error-rate", type=float, default=float(os.environ.get("MODEL_ERROR_RATE", "0"))
    )
    parser.add_argument(
        "--broken-preprocessing",
        action="store_true",
        default=_env_flag("MODEL_BROKEN_PREPROCESSING"),
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the injected 5xx draws")
    parser.add_argument("--ramp-seconds", type=float, default=_env_float("MODEL_RAMP_SECONDS", 0.0))
    parser.add_argument(
        "--ramp-latency-ms", type=float, default=_env_float("MODEL_RAMP_LATENCY_MS", 0.0)
    )
    parser.add_argument(
        "--ramp-error-rate", type=float, default=_env_float("MODEL_RAMP_ERROR_RATE", 0.0)
    )
    parser.add_argument("--hang-after", type=float, default=_env_float("MODEL_HANG_AFTER", None))
    parser.add_argument("--crash-after", type=float, default=_env_float("MODEL_CRASH_AFTER", None))
    args = parser.parse_args(argv)
    if not 0.0 <= args.error_rate <= 1.0:
        parser.error("--error-rate is a share between 0 and 1")
    if not 0.0 <= args.ramp_error_rate <= 1.0:
        parser.error("--ramp-error-rate is a share between 0 and 1")
    if args.ramp_seconds < 0 or args.ramp_latency_ms < 0:
        parser.error("--ramp-seconds and --ramp-latency-ms must be >= 0")
    if (args.ramp_latency_ms or args.ramp_error_rate) and not args.ramp_seconds:
        parser.error(
            "--ramp-latency-ms/--ramp-error-rate need --ramp-seconds (how long the ramp is)"
        )
    sklearn.set_config(assume_finite=True)  # skip per-request NaN checks: inputs are parsed JSON
    model = Model(
        args.name,
        args.version,
        args.latency_ms,
        args.error_rate,
        args.broken_preprocessing,
        args.seed,
        ramp=(args.ramp_seconds, args.ramp_latency_ms, args.ramp_error_rate),
        hang_after=args.hang_after,
        crash_after=args.crash_after,
    )
    serve(model, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
