"""Webhooks: generic JSON and Slack payloads reach a real loopback server; failures are not fatal."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from meshlab.experiment.notify import Notifier
from meshlab.spec.target import Webhook


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    received: list[tuple[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((self.path, json.loads(body)))
            self.send_response(500 if self.path.startswith("/broken") else 200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


EVENT = {
    "event": "aborted",
    "experiment": "fraud-v2",
    "strategy": "canary",
    "phase": "aborted",
    "step": "rollback",
    "detail": "latency-p50 worse",
}


def test_json_and_slack_payloads(receiver: tuple[str, list[tuple[str, Any]]]) -> None:
    url, received = receiver
    notifier = Notifier(
        [Webhook(url=f"{url}/generic"), Webhook(url=f"{url}/slack", format="slack")]
    )
    notifier.send(EVENT)
    notifier.close()
    assert received[0] == ("/generic", {"source": "meshlab", **EVENT})
    path, slack = received[1]
    assert path == "/slack" and set(slack) == {"text"}
    assert (
        ":x:" in slack["text"]
        and "fraud-v2" in slack["text"]
        and "latency-p50 worse" in slack["text"]
    )
    assert notifier.failures == []


def test_failures_are_recorded_without_the_secret_path(
    receiver: tuple[str, list[tuple[str, Any]]],
) -> None:
    url, _ = receiver
    secret = "/broken/T000/B000/XXXXSECRET"
    notifier = Notifier(
        [Webhook(url=f"{url}{secret}"), Webhook(url="http://127.0.0.1:9/closed")], timeout=1.0
    )
    notifier.send(EVENT)  # must not raise
    notifier.close()
    assert len(notifier.failures) == 2
    assert all("SECRET" not in f for f in notifier.failures)
