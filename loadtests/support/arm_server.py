"""A tiny model server on loopback for load tests: answers V2, V1 and generic JSON inference.

Each response carries ``x-meshlab-arm`` (a fixed arm, or a seeded random draw with a known
candidate probability), and every request's ``x-request-id`` and arm are appended to ``--log``, so
tests can check each recorded sample against the arm that really served it. Standard library only::

    python loadtests/support/arm_server.py --port 0 --arm random:0.3 --log served.csv

prints ``PORT <n>`` once it listens. ``--no-arm-header`` leaves attribution to a proxy in front.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _score(body: Any) -> float:
    """A deterministic 'prediction': the sum of the numbers in the request."""
    if isinstance(body, dict):
        return sum(_score(v) for v in body.values() if not isinstance(v, str))
    if isinstance(body, list):
        return sum(_score(v) for v in body)
    if isinstance(body, int | float) and not isinstance(body, bool):
        return float(body)
    return 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--arm",
        default="random:0.5",
        help="baseline | candidate | control | random:P | random:P:Q (Q: control)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log", default=None, help="append 'request_id,arm' per request here")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--no-arm-header", action="store_true")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    lock = threading.Lock()
    log = open(args.log, "a", encoding="utf-8") if args.log else None  # noqa: SIM115

    def pick_arm() -> str:
        if args.arm.startswith("random:"):
            # random:P (candidate P, else baseline) or random:P:Q (candidate P, control Q)
            shares = [float(x) for x in args.arm[7:].split(":")]
            with lock:
                draw = rng.random()
            if draw < shares[0]:
                return "candidate"
            return "control" if len(shares) > 1 and draw < shares[0] + shares[1] else "baseline"
        return str(args.arm)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *a: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                self._send(400, {"error": "body is not JSON"}, "baseline")
                return
            if args.delay_ms:
                time.sleep(args.delay_ms / 1000)
            score = _score(
                body.get("inputs") if isinstance(body, dict) and "inputs" in body else body
            )
            if self.path.startswith("/v2/models/") and self.path.endswith("/infer"):
                name = self.path.split("/")[3]
                out: Any = {
                    "model_name": name,
                    "outputs": [
                        {"name": "output-0", "shape": [1], "datatype": "FP64", "data": [score]}
                    ],
                }
            elif self.path.startswith("/v1/models/") and self.path.endswith(":predict"):
                out = {"predictions": [score]}
            else:
                out = {"prediction": score}
            arm = pick_arm()
            if log is not None:
                with lock:
                    log.write(f"{self.headers.get('x-request-id', '')},{arm}\n")
                    log.flush()
            self._send(200, out, arm)

        def do_GET(self) -> None:
            self._send(200, {"ready": True}, pick_arm())

        def _send(self, status: int, payload: Any, arm: str) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            if not args.no_arm_header:
                self.send_header("x-meshlab-arm", arm)
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        if log is not None:
            log.close()


if __name__ == "__main__":
    main(sys.argv[1:])
