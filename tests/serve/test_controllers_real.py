"""Both controllers' drivers against ``meshlab serve`` judging real Envoy traffic via real Prometheus.

The local mesh (real Envoy) splits requests 50/50 between two loopback model servers; Prometheus
scrapes the Envoys every second; ``meshlab serve`` runs as a subprocess. The drivers call it
exactly as Argo Rollouts (web metric of the shipped AnalysisTemplate) and Flagger (webhooks of the
shipped Canary) do. Time is compressed: one controller interval is ``LOOK`` seconds here.
The comparison with the controllers' own threshold analysis is ``analysis/serve_vs_thresholds.py``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import httpx
import pytest
import yaml

from meshlab.serve import PrometheusSettings
from meshlab.serve.evidence import Evidence
from meshlab.serve.judge import answer_json
from meshlab.serve.sessions import SessionKey, StateStore
from tests.serve.argo_driver import AnalysisRun
from tests.serve.conftest import CLUSTERS, READ_LAG, REPO, MeshStack, ServeProcess
from tests.serve.flagger_driver import CanaryRun
from tests.serve.scenario import Load

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

MANIFESTS = REPO / "istio_manifests" / "serve"
LOOK = 2.0  # seconds per controller interval
MAX_LOOKS = 20
RATE = 60.0  # requests/s through the mesh (about half to each arm)


def _template_metric() -> dict[str, Any]:
    doc = yaml.safe_load((MANIFESTS / "argo-analysistemplate.yaml").read_text())
    metric: dict[str, Any] = doc["spec"]["metrics"][0]
    return metric


def _canary() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((MANIFESTS / "flagger-canary.yaml").read_text())
    return doc


def _argo_run(serve: ServeProcess, revision: str) -> AnalysisRun:
    args = {
        "namespace": "models",
        "rollout": "fraud-model",
        "canary-hash": revision,
        "stable-service": CLUSTERS["baseline"],
        "canary-service": CLUSTERS["candidate"],
        "templates": "envoy",  # the local mesh's Envoy, not Istio's
        "analysis": "default",
    }
    return AnalysisRun(_template_metric(), args, serve.url)


def _flagger_run(serve: ServeProcess, checksum: str) -> CanaryRun:
    overrides = {
        "templates": "envoy",
        "baseline": CLUSTERS["baseline"],
        "candidate": CLUSTERS["candidate"],
    }
    return CanaryRun(_canary(), serve.url, checksum, metadata=overrides)


def _drive(step: Any, max_looks: int = MAX_LOOKS) -> tuple[str, int, float]:
    """Call ``step`` every LOOK seconds until it returns a final phase; (phase, looks, seconds)."""
    started = time.monotonic()
    for look in range(1, max_looks + 1):
        time.sleep(max(0.0, started + look * LOOK - time.monotonic()))
        phase = step()
        if phase not in ("Running", "Progressing"):
            return phase, look, time.monotonic() - started
    return "timeout", max_looks, time.monotonic() - started


def _set(stack: MeshStack, *, delay_ms: float = 8.0, error_rate: float = 0.0) -> None:
    stack.faults["candidate"].delay_ms = delay_ms
    stack.faults["candidate"].error_rate = error_rate


def _report(name: str, phase: str, looks: int, answer: dict[str, Any]) -> None:
    requests = answer.get("requests", {})
    print(
        f"\n[{name}] meshlab: {phase} at look {looks} "
        f"({requests.get('baseline')}+{requests.get('candidate')} requests, "
        f"{answer.get('elapsed_seconds')} s)"
    )


def test_argo_good_candidate_succeeds(mesh_stack: MeshStack, serve: ServeProcess) -> None:
    _set(mesh_stack)
    run = _argo_run(serve, "good1")
    with Load(mesh_stack, RATE):
        phase, looks, _ = _drive(lambda: (run.measure(), run.phase())[1])
    last = run.measurements[-1]
    _report("argo good", phase, looks, last.body or {})
    assert phase == "Successful", [m.value for m in run.measurements]
    assert last.value == "promote" and last.body is not None
    assert all(m.phase in ("Inconclusive", "Successful") for m in run.measurements)
    assert {m["name"] for m in last.body["metrics"]} == {"latency-p50", "errors"}
    assert "beta = 0.05" in last.body["guarantee"]
    # The decision stands (no new evidence is read), and the session's settings are frozen.
    assert run.measure().value == "promote"
    looser = {
        **run.args,
        "analysis": '{"metrics": [{"name": "errors", "type": "error-rate", "tolerance": "9%"}]}',
    }
    answer = httpx.get(f"{serve.url}/argo/v1/measure", params={
        "namespace": "models", "rollout": "fraud-model", "revision": looser["canary-hash"],
        "stable": looser["stable-service"], "canary": looser["canary-service"],
        "templates": "envoy", "analysis": looser["analysis"],
    })  # fmt: skip
    assert answer.status_code == 400 and "started with other settings" in answer.json()["error"]


def test_argo_bad_candidate_fails(mesh_stack: MeshStack, serve: ServeProcess) -> None:
    _set(mesh_stack, delay_ms=16.0, error_rate=0.08)
    run = _argo_run(serve, "bad1")
    with Load(mesh_stack, RATE):
        phase, looks, _ = _drive(lambda: (run.measure(), run.phase())[1])
    last = run.measurements[-1]
    _report("argo bad", phase, looks, last.body or {})
    assert phase == "Failed", [m.value for m in run.measurements]
    assert last.value == "abort"
    assert all(m.phase in ("Inconclusive", "Failed") for m in run.measurements)


def test_flagger_good_candidate_is_promoted(mesh_stack: MeshStack, serve: ServeProcess) -> None:
    _set(mesh_stack)
    run = _flagger_run(serve, "c0ffee01")
    with Load(mesh_stack, RATE):
        phase, looks, _ = _drive(run.iterate)
    last = run.calls[-1]
    _report("flagger good", phase, looks, last.body)
    assert phase == "Succeeded", [(c.hook, c.status) for c in run.calls]
    assert last.hook == "confirm-promotion" and last.status == 200
    assert run.failed_checks == 0
    rollout = [c.status for c in run.calls if c.hook == "rollout"]
    assert rollout and all(s == 200 for s in rollout)


def test_flagger_bad_candidate_is_rolled_back(mesh_stack: MeshStack, serve: ServeProcess) -> None:
    _set(mesh_stack, delay_ms=16.0, error_rate=0.08)
    run = _flagger_run(serve, "bad0c0de")
    with Load(mesh_stack, RATE):
        phase, looks, _ = _drive(run.iterate)
    last = run.calls[-1]
    _report("flagger bad", phase, looks, last.body)
    assert phase == "Failed", [(c.hook, c.status) for c in run.calls]
    # The rollback hook answered 2xx on meshlab's first abort: no waiting for `threshold` failures.
    assert last.hook == "rollback" and last.status == 200 and last.body["verdict"] == "abort"
    assert not any(c.hook == "confirm-promotion" and c.status == 200 for c in run.calls)


def test_little_traffic_is_inconclusive_never_a_failure(
    mesh_stack: MeshStack, serve: ServeProcess
) -> None:
    _set(mesh_stack, delay_ms=16.0, error_rate=0.08)  # even a bad candidate: too little evidence
    argo, flagger = _argo_run(serve, "quiet1"), _flagger_run(serve, "quiet001")
    with Load(mesh_stack, 2.0):
        for _ in range(4):
            time.sleep(LOOK)
            argo.measure()
            flagger.iterate()
    assert argo.phase() == "Running"
    assert [m.phase for m in argo.measurements] == ["Inconclusive"] * 4
    assert flagger.phase == "Progressing" and flagger.failed_checks == 0
    assert all(c.status == 200 for c in flagger.calls if c.hook == "rollout")
    assert all(
        c.status != 200 for c in flagger.calls if c.hook in ("rollback", "confirm-promotion")
    )


def test_restart_mid_analysis_keeps_evidence_and_verdict(
    mesh_stack: MeshStack, serve: ServeProcess
) -> None:
    # A milder fault than the other bad candidate, so the restart falls before the decision.
    _set(mesh_stack, delay_ms=11.0, error_rate=0.05)
    run = _argo_run(serve, "restart1")
    with Load(mesh_stack, RATE):
        for _ in range(2):  # the session's start, then its first look
            time.sleep(LOOK)
            run.measure()
        before = run.measurements[-1].body
        assert before is not None
        old_pid = serve.pids[-1]
        serve.restart()
        assert serve.pids[-1] != old_pid
        time.sleep(LOOK)
        after_restart = run.measure()
        phase, _, _ = _drive(lambda: (run.measure(), run.phase())[1])
    assert after_restart.body is not None
    # Nothing lost: the restarted service counts every request since the session started.
    assert after_restart.body["session"]["started_at"] == before["session"]["started_at"]
    if before["verdict"] == "abort":  # decided before the restart: the decision stands
        assert after_restart.body == {**before, "looks": after_restart.body["looks"]}
    else:
        assert after_restart.body["session"]["look"] == before["session"]["look"] + 1
        for arm in ("baseline", "candidate"):
            assert after_restart.body["requests"][arm] > before["requests"][arm]
    assert run.phase() == "Failed" and run.measurements[-1].value == "abort", phase
    _assert_cold_replay_reproduces_the_deciding_answer(serve, "restart1")


def _assert_cold_replay_reproduces_the_deciding_answer(serve: ServeProcess, revision: str) -> None:
    """A cold start (what a restart is) re-reads the counters at the recorded look times and gets
    exactly the evidence and verdict that were answered live."""
    key = SessionKey("argo", "models", "fraud-model", revision)
    record = StateStore(serve.state_dir).load(key)
    assert record is not None and record.decision is not None
    assert record.read_lag == READ_LAG  # the replay reads at the live reads' times
    evidence = Evidence(record, PrometheusSettings(serve.prometheus_url))
    try:
        evidence.catch_up(replace(record, looks=record.looks[:-1]))
        replayed = answer_json(
            record, record.looks[-1], evidence.look(record.looks[-1]), evidence.counts,
            len(record.looks),
        )  # fmt: skip
    finally:
        evidence.close()
    stored = record.last_answer
    assert replayed["verdict"] == stored["verdict"] == record.decision.verdict == "abort"
    assert replayed["requests"] == stored["requests"]
    assert replayed["errors"] == stored["errors"]
    assert replayed["metrics"] == stored["metrics"]
