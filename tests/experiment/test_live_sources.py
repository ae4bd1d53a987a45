"""The run's live sources as one merge: load rows, tap captures, which source feeds which metric.

The load generator is scripted here (a ``batches()`` generator in place of ``LoadRun``; the real
one is exercised with real Locust in tests/load and the end-to-end tests) because what is under
test is how its batches and watermarks reach the merge; the tap is a scripted drain for the same
reason (the real tap is in tests/mesh and test_end_to_end.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

from meshlab.errors import ConfigError
from meshlab.experiment.sources import (
    LoadSamples,
    LocalMeshSamples,
    StatsAnalyzer,
    TapSamples,
    analysis_core,
    check_collector,
    planned_share,
    uses_collector,
)
from meshlab.load import SampleBatch
from meshlab.manifests import steady_split
from meshlab.metrics import BracketedComparison
from meshlab.metrics.sourced import SourcedComparison
from meshlab.samples import Sample
from meshlab.spec import Experiment, parse_experiment
from meshlab.stats import Comparison
from meshlab.stats.bets import PAIRS, Grouping
from meshlab.stats.serialize import assessment_to_json


def experiment(**spec: Any) -> Experiment:
    base: dict[str, Any] = {
        "strategy": "shadow",
        "service": {"host": "m", "port": 8080},
        "baseline": {"subset": "v1", "labels": {"version": "v1"}},
        "candidate": {"subset": "v2", "labels": {"version": "v2"}},
        "shadow": {"mirrorPercent": 100},
        "analysis": {
            "metrics": [
                {"name": "latency", "type": "latency", "quantile": 0.5, "tolerance": "10%"},
                {"name": "divergence", "type": "prediction-divergence", "tolerance": "5%"},
            ]
        },
    }
    base.update(spec)
    data = {"apiVersion": "meshlab.io/v1alpha1", "kind": "Experiment", "metadata": {"name": "t"}}
    return parse_experiment({**data, "spec": base})


def row(ts: float, rid: str, mirrored: bool = False) -> Sample:
    return Sample(ts, "candidate" if mirrored else "baseline", rid, 5.0, 200, "0.5", mirrored)


class ScriptedRun:
    """LoadRun's streaming side: the given batches, then the end."""

    def __init__(self, batches: list[SampleBatch]) -> None:
        self.script = batches
        self.stopped = False

    def batches(self, poll: float = 0.25) -> Iterator[SampleBatch]:
        yield from self.script

    def stop(self) -> None:
        self.stopped = True


def drain(source: LoadSamples, until: float = 5.0) -> list[Sample]:
    out: list[Sample] = []
    end = time.monotonic() + until
    while not source.finished and time.monotonic() < end:
        out += source.poll(0.05)
    return out


def test_load_samples_carry_the_locust_watermark_and_end_at_infinity() -> None:
    run = ScriptedRun(
        [
            SampleBatch((row(1.0, "a"), row(2.0, "b")), 3.0),
            SampleBatch((), 4.0),  # no rows, but a new promise
            SampleBatch((row(5.0, "c"),), 6.0, late=(row(2.5, "slow"),)),
        ]
    )
    load = LoadSamples(run, poll=0.01)  # type: ignore[arg-type]
    first = load.poll(1.0)
    assert [r.request_id for r in first][:2] == ["a", "b"]
    rest = drain(load)
    # The load's own late rows are handed on as rows: the run's one merge counts lateness.
    assert [r.request_id for r in first + rest] == ["a", "b", "c", "slow"]
    assert load.finished and load.watermark == math.inf


def test_tap_samples_promise_lag_seconds_and_drain_lag_seconds_after_the_load() -> None:
    wall = [100.0]
    captured: list[list[Sample]] = [[row(99.5, "a", True)], [], []]
    ended = [False]
    tap = TapSamples(lambda: captured.pop(0) if captured else [], lambda: ended[0], lag=1.0,
                     wall=lambda: wall[0])  # fmt: skip
    assert tap.watermark == -math.inf
    assert [r.request_id for r in tap.poll(0)] == ["a"]
    assert tap.watermark == 99.0
    ended[0] = True
    wall[0] = 100.5
    tap.poll(0)
    assert not tap.finished  # copies in flight get `lag` seconds after the load ends
    wall[0] = 101.6
    tap.poll(0)
    assert tap.finished and tap.watermark == math.inf


def test_local_mesh_samples_merge_load_and_tap_in_start_time_order() -> None:
    run = ScriptedRun([SampleBatch((row(1.0, "a"), row(3.0, "b")), 10.0)])
    load = LoadSamples(run, poll=0.01)  # type: ignore[arg-type]
    copies = [[row(3.5, "b", True), row(1.5, "a", True)]]
    merged = LocalMeshSamples(load, lambda: copies.pop(0) if copies else [], lag=0.0)
    out: list[Sample] = []
    end = time.monotonic() + 5
    while not merged.finished and time.monotonic() < end:
        out += merged.poll(0.05)
    assert [(r.request_id, r.mirrored) for r in out] == [
        ("a", False), ("a", True), ("b", False), ("b", True)
    ]  # fmt: skip
    assert merged.late == 0 and merged.late_by_source == {"load": 0, "tap": 0}


def test_prometheus_with_a_collector_is_accepted_and_analysed_by_source() -> None:
    exp = experiment(
        metrics={"source": "prometheus", "collector": {"port": 0}},
        target={"kind": "local"},
    )
    assert uses_collector(exp)
    check_collector(exp)  # no longer refused
    bounds = lambda: (1.0, 10.0, math.inf)  # noqa: E731
    assert isinstance(analysis_core(exp, exp.spec.analysis, "shadow", bounds), SourcedComparison)
    alone = experiment(metrics={"source": "prometheus"})
    assert not uses_collector(alone)
    core = analysis_core(alone, alone.spec.analysis, "shadow", bounds)
    assert isinstance(core, BracketedComparison)
    assert isinstance(analysis_core(alone, alone.spec.analysis, "shadow", None), Comparison)
    raw = analysis_core(alone, alone.spec.analysis, "shadow", None, control=True)
    assert isinstance(raw, Comparison) and raw.control
    # with a control, every part compares the candidate with the control's own series/rows
    bracketed = analysis_core(alone, alone.spec.analysis, "shadow", bounds, control=True)
    assert isinstance(bracketed, BracketedComparison) and bracketed.pessimistic.control
    split = analysis_core(exp, exp.spec.analysis, "shadow", bounds, control=True)
    assert isinstance(split, SourcedComparison)
    assert split.prometheus is not None and split.prometheus.pessimistic.control
    assert split.raw is not None and split.raw.control


def test_a_bracketed_comparison_refuses_raw_rows_beside_prometheus_rows() -> None:
    exp = experiment(metrics={"source": "prometheus"})
    core = analysis_core(exp, exp.spec.analysis, "shadow", lambda: (1.0, 10.0, math.inf))
    analyzer = StatsAnalyzer(core, assessment_to_json)
    analyzer.update([Sample(1.0, "baseline", "prom-1", 10.0, 200)])  # Prometheus's alone: fine
    with pytest.raises(RuntimeError, match="SourcedComparison"):
        analyzer.update([Sample(2.0, "baseline", "prom-2", 10.0, 200), row(2.0, "r-1")])


def test_a_cluster_shadow_without_a_collector_is_still_refused() -> None:
    exp = experiment(target={"kind": "kubernetes"})
    with pytest.raises(ConfigError, match=r"^spec.metrics.collector: "):
        check_collector(exp)


def test_only_a_shadow_test_reads_the_tap(tmp_path: Any) -> None:
    from meshlab.experiment.live_sources import samples_source

    def sources(exp: Experiment) -> set[str]:
        load = LoadSamples(ScriptedRun([]), poll=0.01)  # type: ignore[arg-type]
        live, bounds = samples_source(exp, load, list, [], tmp_path)
        assert bounds is None
        return set(live.sources)  # type: ignore[attr-defined]

    assert sources(experiment()) == {"load", "tap"}
    canary = experiment(strategy="canary", canary={"steps": [10, 100]})
    assert sources(canary) == {"load"}  # no mirror, so no tap lag on every row


def test_a_canary_comparison_tunes_each_arm_to_the_first_steps_split() -> None:
    """The split is known from the plan before any data: a 5% first step tunes the candidate's
    bound to its small arm; with a control (equal shares) or in shadow nothing is split."""
    errors = {"name": "errors", "type": "error-rate", "tolerance": "1%"}
    spec = {"strategy": "canary", "canary": {"steps": [5, 25, 50, 100]}}
    exp = experiment(**spec, analysis={"metrics": [errors]})
    core = analysis_core(exp, exp.spec.analysis, "canary", None)
    assert isinstance(core, Comparison) and core.candidate_share == pytest.approx(0.05)
    metric = exp.spec.analysis.metrics[0]
    base, cand = core.arm_design(metric)  # type: ignore[misc]
    assert base == pytest.approx(10 * core.design(metric)) and cand < core.design(metric)
    controlled = analysis_core(exp, exp.spec.analysis, "canary", None, control=True)
    assert controlled.candidate_share == 0.5
    assert controlled.arm_design(metric) == (core.design(metric), core.design(metric))
    shadow = experiment(analysis={"metrics": [errors]})
    assert analysis_core(shadow, shadow.spec.analysis, "shadow", None).candidate_share is None
    then = experiment(then="canary", canary={"steps": [20, 100]}, analysis={"metrics": [errors]})
    assert planned_share(then, "canary", False) == pytest.approx(0.2)
    assert planned_share(then, "shadow", False) is None


def test_error_groups_follow_the_split_only_while_every_step_keeps_it() -> None:
    """A steady 5% canary groups each candidate request with 19 reference requests; a stepped
    one (5% -> 25% -> 50%) would waste the later steps' candidate requests, so it keeps the arms'
    mixtures; a stepped one starting near even pairs one to one."""
    errors = {"name": "errors", "type": "error-rate", "tolerance": "1%"}
    metric_spec = {"metrics": [errors]}
    steady = experiment(strategy="canary", canary={"steps": [5, 100]}, analysis=metric_spec)
    stepped = experiment(
        strategy="canary", canary={"steps": [5, 25, 50, 100]}, analysis=metric_spec
    )
    even = experiment(strategy="canary", canary={"steps": [50, 75, 100]}, analysis=metric_spec)
    assert steady_split(steady) and not steady_split(stepped) and not steady_split(even)
    metric = steady.spec.analysis.metrics[0]
    grouped = analysis_core(steady, steady.spec.analysis, "canary", None)
    assert isinstance(grouped, Comparison) and grouped.grouping == Grouping(1, 19)
    assert grouped.bets_on(metric)
    mixtures = analysis_core(stepped, stepped.spec.analysis, "canary", None)
    assert isinstance(mixtures, Comparison) and not mixtures.bets_on(metric)
    paired = analysis_core(even, even.spec.analysis, "canary", None)
    assert isinstance(paired, Comparison) and paired.grouping == PAIRS
