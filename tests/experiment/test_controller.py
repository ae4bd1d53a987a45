"""The controller's loop under a fake clock: step order, promote, abort, limits, interrupts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meshlab.experiment.controller import Controller, Outcome
from meshlab.experiment.ports import VerdictName
from meshlab.experiment.progress import QuietProgress
from meshlab.experiment.state import ExperimentState, load_state
from meshlab.spec import Experiment, parse_experiment
from tests.experiment.fakes import FakeClock, FakeMesh, FakeSource, ScriptedAnalyzer


def _experiment(**spec: Any) -> Experiment:
    base: dict[str, Any] = {
        "strategy": "canary",
        "service": {"host": "svc", "port": 8080},
        "baseline": {"subset": "v1", "labels": {"v": "1"}},
        "candidate": {"subset": "v2", "labels": {"v": "2"}},
        "canary": {"steps": [10, 50, 100]},
        "limits": {"minSamples": 100, "maxDuration": "30s", "experimentMaxDuration": "10m"},
    }
    base.update(spec)
    return parse_experiment(
        {
            "apiVersion": "meshlab.io/v1alpha1",
            "kind": "Experiment",
            "metadata": {"name": "t"},
            "spec": base,
        }
    )


def _run(
    tmp_path: Path,
    exp: Experiment,
    script: Any,
    mesh: FakeMesh | None = None,
    interrupt_at: float | None = None,
    weights: dict[str, int] | None = None,
) -> tuple[Outcome, FakeMesh, list[tuple[str, float, float]], Path]:
    clock = FakeClock()
    mesh = mesh or FakeMesh()
    mesh.clock = mesh.clock or clock
    source = FakeSource(
        clock, mesh, weights=weights or {"1": 10, "2": 50, "3": 100}, interrupt_at=interrupt_at
    )
    made: list[tuple[str, float, float]] = []

    def factory(mode: str, alpha: float, beta: float) -> ScriptedAnalyzer:
        made.append((mode, alpha, beta))
        return ScriptedAnalyzer(script)

    state_file = tmp_path / "state.json"
    state = ExperimentState(
        "t",
        "default",
        exp.spec.strategy,
        "fake",
        "starting",
        "none",
        str(tmp_path),
        1,
        clock(),
        clock(),
    )
    controller = Controller(
        exp,
        mesh=mesh,
        samples=source,
        analyzers=factory,
        run_dir=tmp_path,
        state=state,
        state_file=state_file,
        progress=QuietProgress(),
        clock=clock,
        drain_seconds=0.5,
    )
    return controller.run(), mesh, made, state_file


def always(verdict: VerdictName) -> Any:
    return lambda n: verdict


def test_promote_walks_every_step_then_promotes(tmp_path: Path) -> None:
    outcome, mesh, _made, state_file = _run(tmp_path, _experiment(), always("promote"))
    assert outcome.verdict == "promote" and outcome.exit_code == 0
    assert mesh.applied == ["1", "2", "3", "promoted"]
    assert [s["outcome"] for s in outcome.steps] == ["promote"] * 3
    # each step waited for minSamples requests before moving on
    assert all(sum(s["requests"].values()) >= 100 for s in outcome.steps)
    state = load_state(state_file)
    assert state is not None and state.phase == "promoted" and state.step == "promoted"
    assert len(list((tmp_path / "manifests").glob("*.yaml"))) == 4


def test_abort_rolls_back_at_once_and_times_it(tmp_path: Path) -> None:
    outcome, mesh, _, state_file = _run(
        tmp_path, _experiment(), lambda n: "abort" if n > 250 else "inconclusive"
    )
    assert outcome.verdict == "abort" and outcome.exit_code == 1
    assert mesh.applied[-1] == "rollback" and "promoted" not in mesh.applied
    assert outcome.rollback is not None and outcome.rollback["decision_to_last_candidate_ms"] >= 0
    # the decision point is the deciding look (25 samples per look, abort once 250 are seen), not
    # the end of the drain that follows the rollback
    assert outcome.decision is not None and outcome.decision["at_request"] == 274
    assert outcome.decision["at_time"] == pytest.approx(2.74, abs=0.02)
    state = load_state(state_file)
    assert state is not None and (state.phase, state.step) == ("aborted", "rollback")
    events = [
        json.loads(line)["event"] for line in (tmp_path / "events.jsonl").read_text().splitlines()
    ]
    assert events[0] == "started" and events[-1] == "aborted"


def test_undecided_step_ends_by_policy_at_its_limit_never_moves_on(tmp_path: Path) -> None:
    # A step at maxDuration with data but no verdict used to move on to the next weight: that
    # raised the candidate's share without a promote verdict (issue 18). It ends by onInconclusive.
    outcome, mesh, _, _ = _run(tmp_path, _experiment(), always("inconclusive"))
    assert outcome.verdict == "inconclusive" and outcome.exit_code == 3
    assert mesh.applied == ["1", "rollback"]
    assert outcome.steps[0]["duration_s"] >= 30 and outcome.steps[0]["outcome"] == "limit"
    assert "step 1 (canary 10%) reached maxDuration undecided" in outcome.reason


def test_full_traffic_step_is_a_soak_that_feeds_no_comparison(tmp_path: Path) -> None:
    fed: list[int] = []

    def script(n: int) -> VerdictName:
        fed.append(n)
        return "promote"

    outcome, mesh, _, _ = _run(tmp_path, _experiment(), script)
    assert mesh.applied == ["1", "2", "3", "promoted"]
    soak = outcome.steps[2]
    assert soak["weight"] == 100 and sum(soak["requests"].values()) >= 100
    # during the 100% step the analyzer saw no new samples: its input count stayed put
    assert fed[-1] == fed[-2] and fed[-1] < sum(sum(s["requests"].values()) for s in outcome.steps)


def test_experiment_limit_ends_by_policy_hold(tmp_path: Path) -> None:
    exp = _experiment(
        limits={"maxDuration": "60s", "experimentMaxDuration": "40s", "onInconclusive": "hold"}
    )
    outcome, mesh, _, _ = _run(tmp_path, exp, always("inconclusive"))
    assert outcome.exit_code == 3 and "experimentMaxDuration" in outcome.reason
    assert mesh.applied == ["1"]  # held: no rollback, no promotion


def test_interrupt_rolls_back_before_exiting(tmp_path: Path) -> None:
    outcome, mesh, _, state_file = _run(
        tmp_path, _experiment(), always("inconclusive"), interrupt_at=1_020.0
    )
    assert outcome.exit_code == 130
    assert mesh.applied[-1] == "rollback"
    state = load_state(state_file)
    assert state is not None and state.step == "rollback" and state.phase == "rolled-back"


def test_mesh_failure_rolls_back_and_exits_4(tmp_path: Path) -> None:
    outcome, mesh, _, _ = _run(
        tmp_path, _experiment(), always("promote"), mesh=FakeMesh(fail_on="2")
    )
    assert outcome.exit_code == 4
    assert mesh.applied == ["1", "rollback"]


def test_failed_rollback_is_reported_not_hidden(tmp_path: Path) -> None:
    outcome, _, _, state_file = _run(
        tmp_path, _experiment(), always("promote"), mesh=FakeMesh(fail_on="2", fail_rollback=True)
    )
    assert outcome.exit_code == 4 and "ROLLBACK FAILED" in outcome.reason
    state = load_state(state_file)
    assert state is not None and state.phase == "failed" and "meshlab rollback" in state.detail


def test_shadow_then_canary_splits_alpha_and_beta_across_phases(tmp_path: Path) -> None:
    exp = _experiment(
        strategy="shadow",
        then="canary",
        shadow={"mirrorPercent": 100},
        analysis={"alpha": 0.05, "beta": 0.1},
    )
    # the fake shows the shadow step's candidate arm as a share of the rows (mirrored copies)
    weights = {"1": 50, "2": 10, "3": 50, "4": 100}
    outcome, mesh, made, _ = _run(tmp_path, exp, always("promote"), weights=weights)
    assert outcome.verdict == "promote"
    assert mesh.applied == ["1", "2", "3", "4", "promoted"]
    assert made == [
        ("shadow", pytest.approx(0.025), pytest.approx(0.05)),
        ("canary", pytest.approx(0.025), pytest.approx(0.05)),
    ]


def test_shadow_that_does_not_pass_gates_the_canary(tmp_path: Path) -> None:
    exp = _experiment(strategy="shadow", then="canary")
    outcome, mesh, _, _ = _run(tmp_path, exp, always("inconclusive"))
    assert outcome.exit_code == 3 and mesh.applied == ["1", "rollback"]
