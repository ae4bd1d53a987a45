"""Tap traces -> mirrored samples, process-group stopping and the ``local`` spec (no Envoy)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from meshlab.errors import MeshError, SpecError
from meshlab.freeport import free_port
from meshlab.mesh.local_arms import _substitute
from meshlab.mesh.processes import ProcessGroup, http_ok, wait_until
from meshlab.mesh.tap import TapReader, extract_prediction, sample_from_trace
from meshlab.spec import parse_experiment
from tests.mesh.conftest import EXAMPLES, running

PATH = ("outputs", 0, "data", 0)


def _trace(request_id: str | None, status: str = "200", body: str = "") -> dict[str, Any]:
    headers = [{"key": ":authority", "value": "127.0.0.1-shadow:8080"}]
    if request_id is not None:
        headers.append({"key": "x-request-id", "value": request_id})
    return {
        "http_buffered_trace": {
            "request": {"headers": headers, "headers_received_time": "2026-11-24T20:51:33.680804Z"},
            "response": {
                "headers": [{"key": ":status", "value": status}],
                "body": {"as_string": body, "truncated": False},
                "headers_received_time": "2026-11-24T20:51:33.683304Z",
            },
        }
    }


def test_a_trace_becomes_a_mirrored_candidate_sample() -> None:
    body = json.dumps({"outputs": [{"name": "predict", "data": [1]}]})
    sample = sample_from_trace(_trace("r-1", body=body), "candidate", PATH)
    assert sample is not None
    assert (sample.arm, sample.request_id, sample.status, sample.prediction, sample.mirrored) == (
        "candidate",
        "r-1",
        200,
        "1",
        True,
    )
    assert sample.latency_ms == pytest.approx(2.5, abs=1e-3)
    assert sample.timestamp == pytest.approx(1795553493.680804)


def test_errors_and_odd_bodies_carry_no_prediction() -> None:
    failed = sample_from_trace(
        _trace("r-2", status="500", body='{"outputs": []}'), "candidate", PATH
    )
    assert failed is not None and failed.status == 500 and failed.prediction == ""
    assert sample_from_trace(_trace(None), "candidate", PATH) is None
    assert extract_prediction("not json", PATH) == ""
    assert extract_prediction('{"outputs": [{"data": []}]}', PATH) == ""
    assert extract_prediction('{"predictions": [[0.1, 0.9]]}', ("predictions", 0)) == "[0.1,0.9]"


def test_the_reader_drains_in_time_order_and_waits_for_partial_files(tmp_path: Path) -> None:
    body = json.dumps({"outputs": [{"data": [0]}]})
    late, early = _trace("late", body=body), _trace("early", body=body)
    late["http_buffered_trace"]["request"]["headers_received_time"] = "2026-11-24T20:51:34Z"
    (tmp_path / "candidate_1.json").write_text(json.dumps(late))
    (tmp_path / "candidate_2.json").write_text(json.dumps(early))
    (tmp_path / "candidate_3.json").write_text('{"http_buffered_trace": {"requ')  # being written
    reader = TapReader(tmp_path, "candidate", "candidate", PATH)
    assert [s.request_id for s in reader.drain()] == ["early", "late"]
    assert [p.name for p in tmp_path.iterdir()] == ["candidate_3.json"]
    old = time.time() - 60
    os.utime(tmp_path / "candidate_3.json", (old, old))
    assert reader.drain() == [] and reader.dropped == 1 and not list(tmp_path.iterdir())


def test_settle_holds_back_young_samples_so_calls_stay_in_order(tmp_path: Path) -> None:
    body = json.dumps({"outputs": [{"data": [0]}]})
    old, young = _trace("old", body=body), _trace("young", body=body)
    now = datetime.now(UTC)
    for trace, age in ((old, 10.0), (young, 0.5)):
        stamp = (now - timedelta(seconds=age)).isoformat().replace("+00:00", "Z")
        trace["http_buffered_trace"]["request"]["headers_received_time"] = stamp
        trace["http_buffered_trace"]["response"]["headers_received_time"] = stamp
    (tmp_path / "candidate_1.json").write_text(json.dumps(young))
    (tmp_path / "candidate_2.json").write_text(json.dumps(old))
    reader = TapReader(tmp_path, "candidate", "candidate", PATH)
    assert [s.request_id for s in reader.drain(settle=5.0)] == ["old"]
    assert [s.request_id for s in reader.drain()] == ["young"]


def test_stopping_a_child_stops_its_whole_process_group(tmp_path: Path) -> None:
    group = ProcessGroup(grace=1.0)
    # A parent that ignores SIGTERM and has a grandchild: SIGKILL after the grace ends both.
    code = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print(p.pid, flush=True); time.sleep(60)"
    )
    child = group.start("stubborn", [sys.executable, "-c", code], tmp_path / "log")
    try:
        wait_until(lambda: (tmp_path / "log").read_text().strip() != "", 10, "grandchild started")
        grandchild = int((tmp_path / "log").read_text().split()[0])
        assert running(grandchild)
        group.stop_all()
        assert child.exit_code() == -signal.SIGKILL
        deadline = time.monotonic() + 5
        while running(grandchild) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running(grandchild)
    finally:
        for pid in (child.pid,):
            if running(pid):
                os.killpg(pid, signal.SIGKILL)


def test_a_child_exiting_early_is_reported_with_its_output(tmp_path: Path) -> None:
    group = ProcessGroup()
    child = group.start(
        "model",
        [sys.executable, "-c", "print('no such model'); raise SystemExit(3)"],
        tmp_path / "log",
    )
    try:
        with pytest.raises(MeshError, match=r"model \(pid \d+\) exited with 3.*no such model"):
            wait_until(lambda: False, 10, "the model became ready", child)
        assert group.dead() == [child]
    finally:
        group.stop_all()


def test_placeholders_and_local_section_validation() -> None:
    assert _substitute("{python} {here}/x --port {port}", 8000, Path("/e")) == (
        f"{sys.executable} /e/x --port 8000"
    )
    data = {
        "apiVersion": "meshlab.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "x"},
        "spec": {
            "strategy": "canary",
            "canary": {"steps": [10]},
            "service": {"host": "m", "port": 80},
            "baseline": {"subset": "v1", "labels": {"v": "1"}},
            "candidate": {"subset": "v2", "labels": {"v": "2"}},
            "local": {
                "baseline": {"url": "http://127.0.0.1:9000"},
                "candidate": {"url": "127.0.0.1:9001"},
            },
        },
    }
    with pytest.raises(SpecError, match=r"spec.local.candidate.url: .*http URL with a port"):
        parse_experiment(data)
    data["spec"]["local"]["candidate"] = {"command": ["serve"]}
    with pytest.raises(SpecError, match=r"spec.local.candidate.readyUrl: a 'command' needs"):
        parse_experiment(data)


def test_the_sample_models_disagree_a_little_and_the_broken_one_a_lot() -> None:
    sys.path.insert(0, str(EXAMPLES / "models"))
    try:
        import serve  # the example server module (trains in milliseconds)
    finally:
        sys.path.pop(0)
    from sklearn.datasets import load_breast_cancer

    rows, _ = load_breast_cancer(return_X_y=True)
    base = serve.Model("m", "baseline", 0, 0, False, 0).predict(rows)
    good = serve.Model("m", "good", 0, 0, False, 0).predict(rows)
    broken = serve.Model("m", "bad", 0, 0, True, 0).predict(rows)
    good_share = sum(a != b for a, b in zip(base, good, strict=True)) / len(base)
    broken_share = sum(a != b for a, b in zip(base, broken, strict=True)) / len(base)
    assert 0 < good_share < 0.02
    assert broken_share > 0.2


def test_the_sample_server_speaks_v1_and_v2_and_injects_faults(tmp_path: Path) -> None:
    group = ProcessGroup()
    port = free_port()
    argv = [
        sys.executable,
        str(EXAMPLES / "models" / "serve.py"),
        "--version",
        "bad",
        "--port",
        str(port),
        "--latency-ms",
        "30",
        "--error-rate",
        "0.5",
    ]
    child = group.start("bad model", argv, tmp_path / "log")
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/v2/health/ready"), 30, "ready", child)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        row = json.loads(
            (EXAMPLES.parent / "loadtests/data/breast_cancer.v1.jsonl").read_text().splitlines()[0]
        )
        statuses = []
        started = time.monotonic()
        for i in range(40):
            path, body = (
                ("/v1/models/breast-cancer:predict", row)
                if i % 2
                else (
                    "/v2/models/breast-cancer/infer",
                    {
                        "inputs": [
                            {
                                "name": "input-0",
                                "shape": [1, 30],
                                "datatype": "FP64",
                                "data": row["instances"][0],
                            }
                        ]
                    },
                )
            )
            conn.request("POST", path, json.dumps(body), {"content-type": "application/json"})
            response = conn.getresponse()
            payload = json.loads(response.read())
            statuses.append(response.status)
            if response.status == 200:
                assert payload.get("predictions") or payload["outputs"][0]["data"]
        assert (time.monotonic() - started) / 40 >= 0.03
        assert 8 <= statuses.count(500) <= 32 and set(statuses) == {200, 500}
        conn.request("GET", "/v2/models/breast-cancer")
        meta = json.loads(conn.getresponse().read())
        assert meta["inputs"][0]["shape"] == [-1, 30]
        conn.close()
    finally:
        group.stop_all()


def test_the_subprocess_module_is_used_with_new_sessions(tmp_path: Path) -> None:
    group = ProcessGroup()
    child = group.start(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(30)"], tmp_path / "log"
    )
    try:
        assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
        assert isinstance(child.popen, subprocess.Popen)
    finally:
        group.stop_all()
    assert not running(child.pid)
