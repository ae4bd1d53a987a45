"""The HTTP side of the fake API server: a threaded server on 127.0.0.1 and its request handler.

The handler decodes a request, hands it to :meth:`FakeKubeAPI.handle`, turns an :class:`ApiError`
into a ``Status`` answer as the real API server does, and applies the configured faults (a request
that hangs unprocessed, or is processed and answered late; an injected :class:`Failure`: a 5xx/429
Status answered without processing, or a hang the client times out on). Anything else raised is a bug in the
fake, or a CEL rule it does not understand: answered 500 and recorded, so the test fails.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

import yaml


class ApiError(Exception):
    """An error answer: HTTP code, Status reason, message (and details)."""

    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details


@dataclass
class Failure:
    """Fail the next ``times`` requests matching ``method`` and ``plural`` (``"*"`` matches any).

    With ``hang == 0`` the request is answered ``status`` (500 InternalError, 503
    ServiceUnavailable, 429 TooManyRequests with ``Retry-After: 1``, ...) as a Status, unprocessed,
    as an overloaded or failing API server (or etcd behind it) does. With ``hang > 0`` it is held
    unprocessed for ``hang`` seconds and the connection closed without an answer: the client's
    request timeout fires first. ``after`` skips that many matching requests before failing.
    """

    method: str
    plural: str
    times: int = 1
    status: int = 500
    hang: float = 0.0
    after: int = 0

    def matches(self, method: str, plural: str) -> bool:
        return self.method in ("*", method) and self.plural in ("*", plural)


_REASONS = {
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass
class Request:
    """What the fake recorded of one request (never headers or bodies)."""

    method: str
    path: str
    verb: str
    status: int  # 0: hung, never answered
    dry_run: bool
    at: float = field(default_factory=time.time)  # when it was answered (or given up)


class Backend(Protocol):
    """What the handler needs of the fake's state."""

    delays: dict[tuple[str, str], tuple[float, str]]
    requests: list[Request]

    def take_failure(self, method: str, plural: str) -> Failure | None: ...

    internal_errors: list[str]
    stopping: threading.Event

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]: ...


def serve(api: Backend) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve ``api`` on 127.0.0.1 (a free port) from a daemon thread."""

    class Handler(_Handler):
        backend = api

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    return server, thread


def parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool, which the API server uses for query flags (the client sends True)."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ApiError(400, "BadRequest", f"invalid boolean value {text!r}")


def parse_body(body: bytes, content_type: str) -> Any:
    if not body:
        return {}
    try:
        if content_type.startswith("application/apply-patch+yaml"):
            return yaml.safe_load(body)
        return json.loads(body)
    except (ValueError, yaml.YAMLError):
        raise ApiError(400, "BadRequest", "the request body could not be decoded") from None


class _Handler(BaseHTTPRequestHandler):
    backend: Backend
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once (no 40 ms delayed-ACK stalls)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        api, method = self.backend, self.command
        plural = (urlsplit(self.path).path.strip("/").split("/") + [""] * 7)[5]
        failure = api.take_failure(method, plural)
        if failure is not None:
            self._fail(failure, method)
            return
        delay, when = api.delays.get((method, plural), (0.0, ""))
        if when == "hang":  # never processed, never answered: the connection just closes
            api.stopping.wait(delay)
            api.requests.append(Request(method, urlsplit(self.path).path, "", 0, False))
            self.close_connection = True
            return
        verb = ""
        try:
            status, payload = api.handle(method, self.path, headers, body)
            verb = _verb(method, self.path)
        except ApiError as exc:
            status, verb = exc.code, _verb(method, self.path)
            payload = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": exc.message,
                "reason": exc.reason,
                "code": exc.code,
            }
            if exc.details:
                payload["details"] = exc.details
        except Exception as exc:  # a bug or an unsupported CEL rule: fail loudly
            api.internal_errors.append(f"{method} {self.path}: {type(exc).__name__}: {exc}")
            status, payload = (
                500,
                {
                    "kind": "Status",
                    "status": "Failure",
                    "reason": "InternalError",
                    "message": f"fake API server error: {exc}",
                    "code": 500,
                },
            )
        if when == "late":
            api.stopping.wait(delay)
        dry = "dryRun=All" in self.path
        api.requests.append(Request(method, urlsplit(self.path).path, verb, status, dry))
        data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
        self.send_response(status)
        self.send_header(
            "Content-Type", "text/plain" if isinstance(payload, str) else "application/json"
        )
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _fail(self, failure: Failure, method: str) -> None:
        api, path = self.backend, urlsplit(self.path).path
        if failure.hang > 0:
            api.stopping.wait(failure.hang)
            api.requests.append(Request(method, path, "", 0, False))
            self.close_connection = True
            return
        reason = _REASONS.get(failure.status, "InternalError")
        payload = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"injected fault: {reason}",
            "reason": reason,
            "code": failure.status,
        }
        data = json.dumps(payload).encode()
        api.requests.append(
            Request(
                method, path, _verb(method, self.path), failure.status, "dryRun=All" in self.path
            )
        )
        self.send_response(failure.status)
        self.send_header("Content-Type", "application/json")
        if failure.status == 429:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log (the fake records requests itself)."""

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout test); nothing to answer


def _verb(method: str, path: str) -> str:
    named = len(urlsplit(path).path.strip("/").split("/")) == 7
    return {
        "GET": "get" if named else "list",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete",
    }.get(method, method.lower())
