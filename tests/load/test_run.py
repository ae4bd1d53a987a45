"""Real Locust runs against loopback servers and a real Envoy: contract, rate, arms, counts, stops.

Each run is short (a few seconds) and every process is stopped by its process group even when an
assertion fails (LoadRun.close in __exit__, fixtures' finally).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from meshlab.load import LoadPlan, LoadRun, LocustConfig, record_load
from meshlab.samples import read_samples

from .conftest import FEATURES_CSV, FEATURES_JSONL, TEMPLATE, Endpoint

pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def config(**kw: object) -> LocustConfig:
    base: dict[str, object] = {"payloads": str(FEATURES_JSONL), "users": 10, "timeout": 2.0}
    return LocustConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_rate_contract_and_arms_through_envoy(envoy_split: Endpoint, tmp_path: Path) -> None:
    """The 'done when' check: 100 rps for 8 s through Envoy's 70/30 split."""
    out = tmp_path / "samples.csv"
    result = record_load(LoadPlan(config(rps=100, users=20), envoy_split.url, 8.0), out)
    samples = read_samples(out)  # validates the whole contract, line by line
    assert len(samples) == result.samples > 0
    assert result.lost == 0 and not result.unattributed and not result.late
    # The rate: requests per second over the span the load ran, within 5% of the target.
    span = samples.timestamp[-1] - samples.timestamp[0]
    rate = (len(samples) - 1) / span
    assert abs(rate - 100) / 100 < 0.05, f"rate {rate:.1f}/s over {span:.2f}s"
    assert 7.5 < span < 8.5  # the duration counts from the first request
    # Every sample names the arm whose server answered its request id.
    served = envoy_split.served_arms()
    arms = np.array(["baseline", "candidate"])[samples.arm]
    # (Under heavy CPU contention Envoy can answer a rare 503 itself, upstream reset: the route
    # still names the arm it chose, but no server logged the request.)
    ok = samples.status == 200
    assert ok.mean() > 0.99 and (samples.status[~ok] >= 500).all()
    wrong = [
        (rid, arm, served.get(rid))
        for rid, arm in zip(samples.request_id[ok], arms[ok], strict=True)
        if served.get(rid) != arm
    ]
    assert not wrong, wrong[:5]
    assert 0.2 < samples.arm.mean() < 0.4  # Envoy's 30% candidate weight
    assert not samples.mirrored.any()
    bad = [p for p in samples.prediction[ok] if not isinstance(p, float)]
    assert not bad, bad[:5]
    assert "locust" not in sys.modules and "gevent" not in sys.modules  # never patched here


def test_workers_merge_without_loss_or_duplicates(arm_server: Endpoint, tmp_path: Path) -> None:
    out = tmp_path / "samples.csv"
    plan = LoadPlan(config(rps=80, users=8), arm_server.url, 4.0, workers=2)
    result = record_load(plan, out)
    samples = read_samples(out)  # also rejects a request id recorded twice
    served = arm_server.served_arms()
    assert result.locust_requests == len(samples) == result.samples > 200
    assert set(samples.request_id) <= set(served)
    # Requests cut off in flight when the users stopped have no response, hence no sample.
    assert len(served) - len(samples) <= 8
    arms = np.array(["baseline", "candidate"])[samples.arm]
    assert all(served[rid] == arm for rid, arm in zip(samples.request_id, arms, strict=True))


def test_stop_ends_the_run_and_every_process(arm_server: Endpoint, tmp_path: Path) -> None:
    plan = LoadPlan(config(rps=40, users=4), arm_server.url, 60.0, workers=1)
    got = 0
    lags: list[float] = []
    with LoadRun(plan, tmp_path / "run") as run:
        pids = run.pids
        timer = threading.Timer(1.5, run.stop)
        started = time.monotonic()
        try:
            for batch in run.batches(poll=0.1):
                got += len(batch.samples)
                if batch.samples and not timer.is_alive() and not timer.finished.is_set():
                    timer.start()  # stop 1.5 s after the first rows
                if batch.samples and not timer.finished.is_set():
                    lags.append(time.time() - batch.samples[-1].timestamp)
        finally:
            timer.cancel()
        elapsed = time.monotonic() - started
        result = run.result()
    assert elapsed < 30, f"took {elapsed:.1f}s"
    # Rows stream out within about a poll of the workers' watermarks, not the 6 s fallback lag.
    assert lags and min(lags) < 1.5, lags
    assert result.stopped_early and got == result.samples > 0
    assert result.lost == 0
    assert not any(alive(pid) for pid in pids)


def test_v1_protocol_extracts_predictions(arm_server: Endpoint, tmp_path: Path) -> None:
    plan = LoadPlan(
        config(
            protocol="v1",
            path="/v1/models/fraud:predict",
            extractor="predictions[0]",
            rps=30,
            users=3,
        ),
        arm_server.url,
        2.0,
    )
    out = tmp_path / "v1.csv"
    record_load(plan, out)
    samples = read_samples(out)
    rows = [json.loads(line) for line in FEATURES_JSONL.read_text().splitlines()]
    expected = {round(sum(r), 6) for r in rows}  # the server predicts the sum of the features
    assert len(samples) > 30
    assert {round(p, 6) for p in samples.prediction} <= expected


def test_json_template_from_csv(arm_server: Endpoint, tmp_path: Path) -> None:
    # The whole response body is the prediction: JSON with commas and quotes survives the CSV.
    plan = LoadPlan(
        config(
            protocol="json",
            path="/score",
            payloads=str(FEATURES_CSV),
            template=str(TEMPLATE),
            extractor="",
            rps=30,
            users=3,
        ),
        arm_server.url,
        2.0,
    )
    out = tmp_path / "json.csv"
    record_load(plan, out)
    samples = read_samples(out)
    assert len(samples) > 20
    assert all(
        set(p) == {"prediction"} and isinstance(p["prediction"], float) for p in samples.prediction
    )


def test_transport_failures_are_kept_apart(tmp_path: Path) -> None:
    from .conftest import stack

    port = stack.free_port()  # nothing listens there
    out = tmp_path / "dead.csv"
    result = record_load(LoadPlan(config(rps=20, users=2), f"http://127.0.0.1:{port}", 2.0), out)
    assert len(read_samples(out)) == 0
    assert result.locust_requests is not None
    assert len(result.unattributed) == result.locust_requests > 10  # 20/s for 2 s
    assert all(s.status == 0 and s.arm == "" for s in result.unattributed)
    assert (tmp_path / "dead.unattributed.csv").read_text().count(
        "\n"
    ) == result.locust_requests + 1


def test_step_shape_changes_the_rate(arm_server: Endpoint, tmp_path: Path) -> None:
    cfg = config(rps=60, users=12, steps=[(20.0, 3.0), (60.0, 3.0)])
    out = tmp_path / "steps.csv"
    record_load(LoadPlan(cfg, arm_server.url, 6.0), out)
    ts = read_samples(out).timestamp
    t0 = ts[0]
    first = ((ts >= t0 + 0.5) & (ts < t0 + 2.5)).sum() / 2.0
    second = ((ts >= t0 + 3.5) & (ts < t0 + 5.5)).sum() / 2.0
    assert 15 <= first <= 25, first
    assert 50 <= second <= 70, second


def test_locustfile_by_hand_records_samples(arm_server: Endpoint, tmp_path: Path) -> None:
    """``locust -f loadtests/v2.py`` run by hand, recording through MESHLAB_SAMPLES."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    spool = tmp_path / "raw.csv"
    env = {
        **os.environ,
        "MESHLAB_PAYLOADS": str(FEATURES_JSONL),
        "MESHLAB_RPS": "20",
        "MESHLAB_USERS": "2",
        "MESHLAB_SAMPLES": str(spool),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(root / "loadtests" / "v2.py"),
            "--headless",
            "--host",
            arm_server.url,
            "-u",
            "2",
            "-r",
            "10",
            "--run-time",
            "2s",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        process_group=0,
    )
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    assert proc.returncode == 0, err.decode()[-500:]
    rows = [r for r in spool.read_text().splitlines() if not r.startswith("#")]  # not watermarks
    assert len(rows) > 10
    assert all(r.split(",")[1] in ("baseline", "candidate") for r in rows)


def test_stop_during_startup_ends_at_once(arm_server: Endpoint, tmp_path: Path) -> None:
    """A master still waiting for its workers ignores SIGTERM; meshlab must still stop it."""
    plan = LoadPlan(config(rps=10, users=2), arm_server.url, 60.0, workers=1)
    with LoadRun(plan, tmp_path / "run") as run:
        pids = run.pids
        time.sleep(1.0)
        started = time.monotonic()
        run.stop()
        rows = sum(len(b.samples) for b in run.batches(poll=0.1))
        result = run.result()
    assert time.monotonic() - started < 5
    assert result.stopped_early and rows == result.samples
    assert not any(alive(pid) for pid in pids)


def test_spool_converts_to_an_ordered_samples_file(tmp_path: Path) -> None:
    """The path for a Kubernetes master's spool: completion order in, contract file out."""
    from meshlab.load import samples_from_spool

    spool = tmp_path / "spool.csv"
    spool.write_text(
        '2.0,candidate,b,1.000,200,"[1,2]",0\n'
        "#,worker-1,1.5\n"
        "1.0,baseline,a,900.000,200,0.5,0\n"
        "1.5,,c,10000.000,0,,0\n"
    )
    out = tmp_path / "samples.csv"
    assert samples_from_spool(spool, out) == (2, 1)
    samples = read_samples(out)
    assert list(samples.request_id) == ["a", "b"]
    assert list(samples.prediction) == [0.5, [1, 2]]
    assert (tmp_path / "samples.unattributed.csv").read_text().splitlines()[1].startswith("1.5,,c")
