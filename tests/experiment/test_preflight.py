"""Pre-flight against real HTTP servers on loopback: each bad version stops the run in one line.

The servers are tiny stdlib HTTP servers in threads answering a fixed status and body; the mesh
is a plain object with the local mesh's ``model_urls`` (the probe reads nothing else), so these
tests check the rule and the messages; tests/mlserver/ runs it through the real mesh and CLI.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from meshlab.errors import EXIT_BAD_INPUT, EXIT_INFRASTRUCTURE
from meshlab.experiment.preflight import (
    PreflightConfigError,
    PreflightUnreachable,
    check_before_routing,
)
from meshlab.load.config import LocustConfig
from meshlab.spec import parse_experiment
from tests.conftest import REPO

PAYLOADS = str(REPO / "loadtests" / "data" / "breast_cancer.v2.jsonl")
GOOD = json.dumps({"outputs": [{"name": "predict", "data": [1]}]}).encode()


@dataclass
class Server:
    status: int = 200
    body: bytes = GOOD
    seen: list[str] = field(default_factory=list)


@pytest.fixture
def servers() -> Iterator[dict[str, tuple[Server, str]]]:
    out: dict[str, tuple[Server, str]] = {}
    running = []
    for arm in ("baseline", "candidate"):
        state = Server()

        class Handler(BaseHTTPRequestHandler):
            spec = state

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                self.spec.seen.append(self.path)
                self.send_response(self.spec.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(self.spec.body)))
                self.end_headers()
                self.wfile.write(self.spec.body)

            def log_message(self, *args: Any) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        running.append((httpd, thread))
        out[arm] = (state, f"http://127.0.0.1:{httpd.server_address[1]}")
    try:
        yield out
    finally:
        for httpd, thread in running:
            httpd.shutdown()
            httpd.server_close()
            thread.join(5)


class FakeMesh:
    """Only what the probe reads: the versions' own URLs (the Kubernetes-free local seam)."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.model_urls = urls


def _run(
    example_data: dict[str, Any],
    servers: dict[str, tuple[Server, str]],
    tmp_path: Path,
    *,
    divergence: bool = True,
    extractor: str = "outputs[0].data[0]",
    expected: list[int] | None = None,
) -> None:
    if not divergence:
        example_data["spec"]["analysis"]["metrics"] = [
            m
            for m in example_data["spec"]["analysis"]["metrics"]
            if m["type"] != "prediction-divergence"
        ]
    if expected:
        example_data["spec"]["analysis"]["expectedStatuses"] = expected
    exp = parse_experiment(example_data)
    config = LocustConfig(
        model="breast-cancer",
        path="/v2/models/breast-cancer/infer",
        payloads=PAYLOADS,
        extractor=extractor,
        timeout=2.0,
    )
    urls = {arm: url for arm, (_, url) in servers.items()}
    check_before_routing(
        exp,
        FakeMesh(urls),
        config,
        urls["baseline"],
        tmp_path,
        retry_pause=0.0,  # type: ignore[arg-type]
    )


def test_good_versions_pass_and_answers_are_kept(
    example_data: dict[str, Any], servers: dict[str, tuple[Server, str]], tmp_path: Path
) -> None:
    _run(example_data, servers, tmp_path)
    answers = json.loads((tmp_path / "preflight.json").read_text())
    assert [(a["arm"], a["via"]) for a in answers][::3] == [
        ("baseline", "direct"),
        ("candidate", "direct"),
        ("baseline", "mesh"),
    ]
    assert all(a["status"] == 200 and a["prediction"] == "1" for a in answers)
    assert servers["candidate"][0].seen == ["/v2/models/breast-cancer/infer"] * 3


def test_a_404_candidate_stops_with_exit_2_quoting_the_answer(
    example_data: dict[str, Any], servers: dict[str, tuple[Server, str]], tmp_path: Path
) -> None:
    state, url = servers["candidate"]
    state.status, state.body = 404, b'{"error":"Model breast-cancer not found"}'
    with pytest.raises(PreflightConfigError) as info:
        _run(example_data, servers, tmp_path)
    message = str(info.value)
    assert message.startswith(
        "pre-flight: candidate: POST /v2/models/breast-cancer/infer -> 404 "
        '{"error":"Model breast-cancer not found"} (direct, ' + url + ")"
    )
    assert "spec.load.model" in message and "\n" not in message
    assert info.value.exit_code == EXIT_BAD_INPUT


def test_an_expected_status_passes(
    example_data: dict[str, Any], servers: dict[str, tuple[Server, str]], tmp_path: Path
) -> None:
    servers["candidate"][0].status = 400
    _run(example_data, servers, tmp_path, expected=[400])


def test_a_5xx_candidate_is_retried_then_exit_4(
    example_data: dict[str, Any], servers: dict[str, tuple[Server, str]], tmp_path: Path
) -> None:
    state, _ = servers["candidate"]
    state.status, state.body = 500, b'{"error":"boom"}'
    with pytest.raises(
        PreflightUnreachable, match=r"-> 500 \{\"error\":\"boom\"\}.*3 times"
    ) as info:
        _run(example_data, servers, tmp_path)
    assert info.value.exit_code == EXIT_INFRASTRUCTURE and len(state.seen) == 3


def test_nothing_listening_is_exit_4(
    example_data: dict[str, Any], servers: dict[str, tuple[Server, str]], tmp_path: Path
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    state, _ = servers["candidate"]
    servers["candidate"] = (state, f"http://127.0.0.1:{port}")
    with pytest.raises(
        PreflightUnreachable, match=r"candidate: POST .* -> no answer .*spec.local.candidate"
    ):
        _run(example_data, servers, tmp_path)


def test_no_prediction_is_exit_2_naming_the_extractor(
    example_data: dict[str, Any], servers: dict[str, tuple[Server, str]], tmp_path: Path
) -> None:
    with pytest.raises(
        PreflightConfigError, match=r"spec.load.extractor 'predictions\[0\]' found no prediction"
    ):
        _run(example_data, servers, tmp_path, extractor="predictions[0]")
    servers["candidate"][0].body = b'{"outputs": []}'  # empty predictions
    with pytest.raises(PreflightConfigError, match=r"candidate: .*found no prediction"):
        _run(example_data, servers, tmp_path)
    _run(example_data, servers, tmp_path, divergence=False)  # no divergence metric: not needed
