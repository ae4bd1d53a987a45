"""The fault model of issue 17 in the controller, with fake meshes under a fake clock.

The mesh reports failed components through ``faults()`` (the contract of ``meshlab.mesh.base``,
mirrored by ``FakeFault``); the real local mesh's faults are injected end to end elsewhere.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from meshlab.experiment.faults import judge_faults, mesh_faults
from meshlab.experiment.state import load_state
from meshlab.samples import Sample
from tests.experiment.fakes import FakeFault, FakeMesh
from tests.experiment.test_controller import _experiment, _run, always

T = 1_020.0  # 20 s into the run: step 1 at 10%, undecided (its limit is 30 s)


def _events(run_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def test_candidate_crash_is_an_abort_with_its_reason_and_a_rollback(tmp_path: Path) -> None:
    mesh = FakeMesh(
        failures=[FakeFault("candidate", "candidate model server (pid 42)", "was killed", T)]
    )
    outcome, mesh, _, state_file = _run(tmp_path, _experiment(), always("inconclusive"), mesh)
    assert outcome.verdict == "abort" and outcome.exit_code == 1
    assert re.fullmatch(
        r"candidate crashed after \d+ requests; 0 failed \(candidate model server \(pid 42\) "
        r"was killed\)",
        outcome.reason,
    ), outcome.reason
    assert mesh.applied == ["1", "rollback"]
    assert outcome.rollback is not None and outcome.decision is not None
    state = load_state(state_file)
    assert state is not None and (state.phase, state.step) == ("aborted", "rollback")
    assert _events(tmp_path)[-1]["event"] == "aborted"
    assert outcome.steps[-1]["outcome"] == "candidate fault"


def test_candidate_crash_counts_its_failed_requests() -> None:
    rows = [Sample(1.0 + i, "candidate", f"r{i}", 5.0, 200 if i < 7 else 0) for i in range(10)]
    rows += [Sample(1.0, "baseline", "b", 5.0, 503)]
    verdict = judge_faults([FakeFault("candidate", "candidate sidecar Envoy", "died", 1.0)], rows)
    assert verdict is not None and verdict.reason.startswith(
        "candidate crashed after 10 requests; 3 failed"
    )


def test_baseline_failure_is_infrastructure_and_routes_go_back_anyway(tmp_path: Path) -> None:
    mesh = FakeMesh(failures=[FakeFault("baseline", "baseline model server", "exited 1", T)])
    outcome, mesh, _, state_file = _run(tmp_path, _experiment(), always("inconclusive"), mesh)
    assert outcome.exit_code == 4 and outcome.verdict == "inconclusive"
    assert "the baseline failed (baseline model server exited 1)" in outcome.reason
    assert "infrastructure failure, not a verdict on the candidate" in outcome.reason
    assert outcome.reason.endswith("; rolled back") and mesh.applied[-1] == "rollback"
    state = load_state(state_file)
    assert state is not None and (state.phase, state.step) == ("failed", "rollback")


@pytest.mark.parametrize("role", ["router", "load", "metrics", "control"])
def test_other_failures_roll_back_and_exit_4(tmp_path: Path, role: str) -> None:
    mesh = FakeMesh(failures=[FakeFault(role, f"the {role}", "stopped answering for 3.0s", T)])
    outcome, mesh, _, _ = _run(tmp_path, _experiment(), always("inconclusive"), mesh)
    assert outcome.exit_code == 4
    assert outcome.reason.startswith(f"infrastructure failure: {role} failed (the {role} stopped")
    assert outcome.reason.endswith("; rolled back") and mesh.applied[-1] == "rollback"
    event = _events(tmp_path)[-1]
    assert event["event"] == "failed" and event["rolled_back"] is True


def test_candidate_and_another_fault_together_blame_the_environment(tmp_path: Path) -> None:
    mesh = FakeMesh(
        failures=[
            FakeFault("candidate", "candidate model server", "was killed", T),
            FakeFault("router", "outbound Envoy", "was killed", T),
        ]
    )
    outcome, _, _, _ = _run(tmp_path, _experiment(), always("inconclusive"), mesh)
    assert outcome.exit_code == 4 and "router failed" in outcome.reason
    assert "candidate model server was killed" in outcome.reason


@pytest.mark.parametrize("role", ["candidate", "baseline", "router"])
def test_rolled_back_is_never_said_beside_rollback_failed(tmp_path: Path, role: str) -> None:
    mesh = FakeMesh(fail_rollback=True, failures=[FakeFault(role, f"the {role}", "died", T)])
    outcome, mesh, _, state_file = _run(tmp_path, _experiment(), always("inconclusive"), mesh)
    assert "ROLLBACK FAILED" in outcome.reason and "rolled back" not in outcome.reason.lower()
    assert outcome.exit_code == 4 and "rollback" not in mesh.applied
    state = load_state(state_file)
    assert state is not None and state.phase == "failed" and state.step != "rollback"
    assert "rolled back" not in state.detail.lower().replace("rollback failed", "")


def test_mesh_without_faults_reports_none() -> None:
    class Old:
        pass

    assert mesh_faults(Old()) == []
    assert judge_faults([], []) is None
