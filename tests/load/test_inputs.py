"""Bad load inputs are one line with exit 2 before anything starts, and so are Locust's own.

Real files, the real CLI in a subprocess, real Locust processes (stopped by the runner's close,
which kills their process group, also when an assertion fails).
"""

from __future__ import annotations

import functools
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshlab.errors import ConfigError, MeshError
from meshlab.load import LoadPlan, LoadRun, LocustConfig, plan_from_spec
from meshlab.mesh.processes import http_ok, wait_until
from meshlab.spec import parse_experiment

from .conftest import FEATURES_JSONL


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshlab", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("payloads", "content", "message"),
    [
        ("nope.jsonl", None, "spec.load.payloads: {dir}/nope.jsonl: cannot read the payload file"),
        ("bad.jsonl", "[1, 2\n", "spec.load.payloads: {dir}/bad.jsonl:1: not a JSON value"),
        (
            "words.jsonl",
            '["a", "b"]\n',
            "spec.load.payloads: {dir}/words.jsonl row 1: V2 feature vectors",
        ),
        ("data.txt", "1,2\n", "spec.load.payloads: {dir}/data.txt: payload files must end in"),
    ],
)
def test_validate_checks_the_payload_file(
    tmp_path: Path,
    example_data: dict[str, Any],
    payloads: str,
    content: str | None,
    message: str,
) -> None:
    if content is not None:
        (tmp_path / payloads).write_text(content)
    example_data["spec"].setdefault("load", {})["payloads"] = payloads
    spec = tmp_path / "exp.yaml"
    spec.write_text(yaml.safe_dump(example_data))
    proc = _cli("validate", "-f", str(spec))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in proc.stderr
    assert line == f"meshlab: error: {message.format(dir=tmp_path.resolve())}" or line.startswith(
        f"meshlab: error: {message.format(dir=tmp_path.resolve())}"
    ), line
    # the same check stops a start before Locust runs
    exp = parse_experiment(example_data)
    with pytest.raises(ConfigError, match=r"^spec\.load\.payloads: "):
        plan_from_spec(exp.spec.load, "http://127.0.0.1:9", base_dir=tmp_path)


def test_validate_counts_good_payloads(tmp_path: Path, example_data: dict[str, Any]) -> None:
    example_data["spec"].setdefault("load", {})["payloads"] = str(FEATURES_JSONL)
    spec = tmp_path / "exp.yaml"
    spec.write_text(yaml.safe_dump(example_data))
    proc = _cli("validate", "-f", str(spec))
    assert proc.returncode == 0 and "payloads" in proc.stdout, proc.stderr


def test_a_binary_spec_is_one_line_exit_2(tmp_path: Path) -> None:
    spec = tmp_path / "exp.yaml"
    spec.write_bytes(b"apiVersion: \xff\xfe\x00meshlab\n")
    proc = _cli("validate", "-f", str(spec))
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith(
        "not UTF-8 text (byte 0xff at offset 12); an experiment file is YAML saved as UTF-8"
    )
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


def test_a_configuration_error_locust_finds_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MESHLAB_RPS reaches only the Locust side (an override for hand runs): it refuses it."""
    monkeypatch.setenv("MESHLAB_RPS", "fast")
    config = LocustConfig(payloads=str(FEATURES_JSONL), users=1, timeout=1.0)
    run = LoadRun(LoadPlan(config, "http://127.0.0.1:9", duration=5.0), tmp_path)
    try:
        run.start()
        with pytest.raises(ConfigError) as info:
            for _ in run.batches(poll=0.1):
                pass
    finally:
        run.close()
    assert str(info.value) == (
        "the load generator refused its configuration: MESHLAB_RPS: 'fast' is not a valid float"
    )


def test_bad_payloads_stop_a_load_run_before_locust_starts(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"inputs": 1}\nnot json\n')
    with pytest.raises(ConfigError, match=r"spec.load.payloads: .*bad.jsonl:2: not a JSON value"):
        LoadRun(LoadPlan(LocustConfig(payloads=str(bad)), "http://127.0.0.1:9", 1.0), tmp_path)
    assert not (tmp_path / "locust.log").exists()


@pytest.fixture
def not_ready_url() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"error":"Model breast-cancer not found"}'
            self.send_response(404)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v2/models/breast-cancer/ready"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_a_readiness_timeout_says_what_the_url_answered(not_ready_url: str) -> None:
    with pytest.raises(MeshError) as info:
        wait_until(functools.partial(http_ok, not_ready_url), 0.5, "readyUrl answered 2xx")
    assert (
        f'({not_ready_url} last answered 404 {{"error":"Model breast-cancer not found"}})'
        in str(info.value)
    )
    with pytest.raises(MeshError, match=r"last gave no answer"):
        wait_until(functools.partial(http_ok, "http://127.0.0.1:9/ready"), 0.3, "ready")
