"""No data, no progress (issue 18, item 1): the controller's loop under a fake clock.

The metrics source is a scripted fake (``ScheduledSource``): per stretch of fake time it yields
rows of both arms, of one arm only, nothing, or nothing while it reports an outage the way
``PrometheusLiveSamples.outage_status`` does. The real Prometheus is killed end to end in
``test_prometheus_outage_end_to_end.py``; here Hypothesis tries interleavings no run could.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshlab.errors import MetricsError
from meshlab.experiment.controller import Controller, Outcome
from meshlab.experiment.ports import Snapshot, VerdictName
from meshlab.experiment.progress import QuietProgress
from meshlab.experiment.state import ExperimentState
from meshlab.manifests.routing import RoutingPlan
from meshlab.samples import Sample
from tests.experiment.fakes import FakeClock, FakeMesh
from tests.experiment.test_controller import _experiment

Kind = Literal["both", "baseline-only", "candidate-only", "silence", "outage", "fail"]
WEIGHTS = {"1": 10, "2": 50, "3": 100, "promoted": 100}


@dataclass(frozen=True)
class FakeOutage:
    since: float

    def describe(self) -> str:
        return (
            f"Prometheus at http://127.0.0.1:9 unreachable since {self.since:.0f} (1 failed look)"
        )


@dataclass
class ScheduledSource:
    """Rows by a schedule of (seconds, kind) stretches; after the schedule, ``tail`` forever."""

    clock: FakeClock
    mesh: FakeMesh
    schedule: list[tuple[float, Kind]]
    tail: Kind = "both"
    rate: float = 50.0
    fresh: dict[str, int] = field(default_factory=lambda: {"baseline": 0, "candidate": 0})
    rolled_back: bool = False
    stopped: bool = False
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def _kind(self) -> tuple[Kind, float]:
        t = self.clock.now - 1_000.0
        start = 0.0
        for seconds, kind in self.schedule:
            if t < start + seconds:
                return kind, start
            start += seconds
        return self.tail, start

    @property
    def outage_status(self) -> FakeOutage | None:
        kind, start = self._kind()
        down = kind in ("outage", "fail")  # a source that gave up is still down
        return FakeOutage(1_000.0 + start) if down and not self.rolled_back else None

    def poll(self, timeout: float) -> list[Sample]:
        kind, _ = self._kind()
        begun = self.clock.now
        self.clock.sleep(timeout)
        if self.rolled_back or kind in ("silence", "outage"):
            return []
        if kind == "fail":
            raise MetricsError("Prometheus at http://127.0.0.1:9 unreachable past its grace period")
        weight = WEIGHTS.get(self.mesh.applied[-1], 0) if self.mesh.applied else 0
        out = []
        for i in range(int(self.rate * timeout)):
            k = next(self._ids)
            arm = "candidate" if (k % 100) < weight else "baseline"
            if (kind == "baseline-only" and arm == "candidate") or (
                kind == "candidate-only" and arm == "baseline"
            ):
                continue
            self.fresh[arm] += 1
            out.append(Sample(begun + i / self.rate, arm, f"r{k}", 5.0, 200, "1"))
        return out

    @property
    def finished(self) -> bool:
        return self.stopped

    def stop(self) -> None:
        self.stopped = True

    def after_rollback(self) -> None:
        self.rolled_back = True


@dataclass
class Analyzer:
    """Verdicts from a script, one per look, cycling."""

    script: list[VerdictName]
    looks: int = 0
    last: VerdictName = "inconclusive"

    def update(self, samples: object) -> None:
        return None

    def snapshot(self) -> Snapshot:
        self.last = self.script[self.looks % len(self.script)]
        self.looks += 1
        return Snapshot(self.last, [], 0, 0, reasons=[f"scripted {self.last}"])


@dataclass
class WatchingMesh(FakeMesh):
    """Checks, at every apply that raises the weight, the evidence it rests on."""

    source: ScheduledSource | None = None
    analyzer: Analyzer | None = None
    min_samples: int = 0
    raises: list[tuple[str, str, dict[str, int]]] = field(default_factory=list)

    def apply(self, plan: RoutingPlan) -> None:
        before = WEIGHTS.get(self.applied[-1], 0) if self.applied else 0
        if self.applied and WEIGHTS.get(plan.step, 0) > before:
            assert self.source is not None and self.analyzer is not None
            self.raises.append((plan.step, self.analyzer.last, dict(self.source.fresh)))
        if self.source is not None:
            self.source.fresh = {"baseline": 0, "candidate": 0}
        super().apply(plan)


def run(
    tmp_path: Path,
    schedule: list[tuple[float, Kind]],
    script: list[VerdictName],
    tail: Kind = "both",
    **limits: object,
) -> tuple[Outcome, WatchingMesh]:
    clock = FakeClock()
    exp = _experiment(
        limits={"minSamples": 100, "maxDuration": "30s", "experimentMaxDuration": "10m", **limits}
    )
    mesh = WatchingMesh(clock=clock, min_samples=exp.spec.limits.min_samples)
    source = ScheduledSource(clock, mesh, schedule, tail)
    analyzer = Analyzer(script)
    mesh.source, mesh.analyzer = source, analyzer
    state = ExperimentState(
        "t", "default", "canary", "fake", "starting", "none", str(tmp_path), 1, clock(), clock()
    )
    controller = Controller(
        exp,
        mesh=mesh,
        samples=source,
        analyzers=lambda mode, a, b: analyzer,
        run_dir=tmp_path,
        state=state,
        state_file=tmp_path / "state.json",
        progress=QuietProgress(),
        clock=clock,
        drain_seconds=0.5,
    )
    return controller.run(), mesh


def _events(run_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


stretches = st.lists(
    st.tuples(
        st.floats(min_value=0.5, max_value=45.0),
        st.sampled_from(["both", "baseline-only", "candidate-only", "silence", "outage"]),
    ),
    max_size=8,
)
verdicts = st.lists(st.sampled_from(["promote", "inconclusive", "abort"]), min_size=1, max_size=6)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    schedule=stretches,
    script=verdicts,
    tail=st.sampled_from(["both", "silence", "outage", "fail"]),
)
def test_weight_only_increases_after_a_promote_verdict_on_fresh_data(
    tmp_path_factory: object,
    schedule: list[tuple[float, Kind]],
    script: list[VerdictName],
    tail: Kind,
) -> None:
    import pytest

    assert isinstance(tmp_path_factory, pytest.TempPathFactory)
    outcome, mesh = run(tmp_path_factory.mktemp("p"), schedule, script, tail)
    for name, verdict, fresh in mesh.raises:
        assert verdict == "promote", (name, verdict, fresh)
        # the step just left had its own minSamples, with rows of both arms where both served
        # (the step before "promoted" is the 100% soak: the candidate's rows only)
        assert sum(fresh.values()) >= mesh.min_samples and fresh["candidate"] > 0
        if name != "promoted":
            assert fresh["baseline"] > 0
    if outcome.verdict != "promote":
        assert mesh.applied[-1] == "rollback"  # onInconclusive: rollback (the default)
    assert "rolled back" not in outcome.reason or "ROLLBACK FAILED" not in outcome.reason


def test_an_outage_at_the_step_limit_holds_and_names_the_source(tmp_path: Path) -> None:
    # data for 1 s (50 rows < minSamples), then the source is down: at 30 s the step holds (no step 2) until the source
    # gives up (here at 50 s), and the run ends as an infrastructure failure that names it
    outcome, mesh = run(tmp_path, [(1.0, "both"), (49.0, "outage")], ["promote"], tail="fail")
    assert mesh.applied == ["1", "rollback"]
    assert outcome.exit_code == 4 and "infrastructure failure: Prometheus" in outcome.reason
    assert "rolled back" in outcome.reason and "ROLLBACK FAILED" not in outcome.reason
    held = [e for e in _events(tmp_path) if e["event"] == "step-held"]
    assert len(held) == 1 and "unreachable since" in str(held[0]["reason"])
    assert outcome.steps and outcome.steps[-1]["outcome"] == "infrastructure failure"


def test_an_outage_past_the_experiment_limit_ends_by_policy_with_the_reason(tmp_path: Path) -> None:
    outcome, mesh = run(
        tmp_path, [(2.0, "both")], ["promote"], tail="outage", experimentMaxDuration="60s"
    )
    assert mesh.applied == ["1", "rollback"] and outcome.exit_code == 3
    assert "experimentMaxDuration" in outcome.reason
    assert "Prometheus at http://127.0.0.1:9 unreachable since" in outcome.reason


def test_no_candidate_samples_end_the_step_by_policy(tmp_path: Path) -> None:
    outcome, mesh = run(tmp_path, [], ["promote"], tail="baseline-only")
    assert mesh.applied == ["1", "rollback"] and outcome.exit_code == 3
    assert outcome.reason.startswith("no candidate samples in step 1")
    assert _events(tmp_path)[-1]["event"] == "inconclusive"


def test_a_promote_verdict_from_before_the_step_is_not_evidence(tmp_path: Path) -> None:
    # promote on fresh data in step 1; step 2 gets no rows: the verdict stays promote, but the
    # weight must not go to 100% on it
    outcome, mesh = run(tmp_path, [(3.0, "both")], ["promote"], tail="silence")
    assert mesh.applied == ["1", "2", "rollback"] and outcome.exit_code == 3
    assert outcome.reason.startswith("no ") and "samples in step 2" in outcome.reason


def test_a_dead_source_keeps_the_steps_and_the_last_analysis(tmp_path: Path) -> None:
    outcome, mesh = run(tmp_path, [(10.0, "both")], ["inconclusive"], tail="fail")
    assert outcome.exit_code == 4 and outcome.snapshot is not None
    assert outcome.steps and outcome.steps[0]["requests"]["baseline"] > 0
    assert mesh.source is not None and mesh.source.rolled_back  # told before the drain
