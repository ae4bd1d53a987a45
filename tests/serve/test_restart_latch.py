"""A pass that stood before a restart of ``meshlab serve`` still stands after it.

The seam faked here is Prometheus (the real-Prometheus restart test,
``test_controllers_real.py``, decides an abort, where no pass is involved): a scripted backend
returns the same windows for the same read times, as settled Prometheus counters do. The error
metric passes early (both arms at 1%), then the candidate drifts to the tolerance, so its *current*
upper bound is back above the tolerance while its lower bound stays below: only the standing
pass promotes, and a cold session that re-read the counters without re-assessing each look would
answer inconclusive.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from meshlab.metrics.base import ArmTotals, Window
from meshlab.samples import Sample, Samples
from meshlab.serve import PrometheusSettings
from meshlab.serve import evidence as evidence_module
from meshlab.serve.evidence import Evidence
from meshlab.serve.sessions import SessionKey, SessionRecord
from meshlab.serve.targets import build_target
from meshlab.spec.analysis import Analysis

START = 1000.0
LOOKS = (1010.0, 1020.0, 1030.0, 1040.0)
PER_ARM = 10_000  # requests per arm in each window
# failures per window (baseline, candidate): equal, then the candidate at the tolerance and over
ERRORS = ((100, 100), (100, 100), (100, 500), (100, 500))
TOLERANCE = 0.02


class ScriptedPrometheus:
    """Stands in for :class:`meshlab.metrics.PrometheusMetrics`: window k ends at ``LOOKS[k]``."""

    bounds: tuple[float, ...] = ()

    def __init__(self, *_: Any, clock: Any, **__: Any) -> None:
        self._clock = clock
        self._last: float | None = None

    def close(self) -> None:
        pass

    def fetch(self) -> Window:
        at = self._clock()
        start, self._last = self._last, at
        if start is None:
            return Window(at, at, Samples.from_rows([]))
        rows: list[Sample] = []
        totals = {"baseline": [0, 0], "candidate": [0, 0]}
        for k, end in enumerate(LOOKS):
            if not start < end <= at:
                continue
            for arm, failures in zip(("baseline", "candidate"), ERRORS[k], strict=True):
                totals[arm][0] += PER_ARM
                totals[arm][1] += failures
                rows += [
                    Sample(end - 1 + i / PER_ARM, arm, f"{arm}-{k}-{i}", 10.0,
                           500 if i < failures else 200)
                    for i in range(PER_ARM)
                ]  # fmt: skip
        rows.sort(key=lambda s: s.timestamp)
        arms = {arm: ArmTotals(n, e, n) for arm, (n, e) in totals.items()}
        return Window(start, at, Samples.from_rows(rows), arms)


@pytest.fixture
def record(monkeypatch: pytest.MonkeyPatch) -> SessionRecord:
    monkeypatch.setattr(evidence_module, "PrometheusMetrics", ScriptedPrometheus)
    analysis = Analysis.model_validate(
        {"metrics": [{"name": "errors", "type": "error-rate", "tolerance": "2%",
                      "abortOn": "beyond-tolerance"}]}
    )  # fmt: skip
    target = build_target(
        "istio-workload", baseline="fraud-model-primary", candidate="fraud-model",
        namespace="models", services=["fraud-model"],
    )  # fmt: skip
    return SessionRecord(
        SessionKey("argo", "models", "fraud-model", "abc"), START, analysis, target, LOOKS
    )


def _last(assessment: Any) -> tuple[str, Any]:
    (metric,) = assessment.metrics
    return assessment.verdict.outcome, metric


def test_a_pass_before_a_restart_stands_after_it(record: SessionRecord) -> None:
    settings = PrometheusSettings("http://prometheus.invalid")
    warm = Evidence(replace(record, looks=()), settings)
    warm.catch_up(replace(record, looks=()))
    answers = [warm.look(at) for at in LOOKS]
    first, *_, final = (_last(a) for a in answers)
    assert first[0] == "promote"  # both arms at 1%: passed at the first look
    verdict, metric = final
    assert metric.upper > TOLERANCE > metric.lower  # now undecided on its own ...
    assert verdict == "promote" and metric.passed_at == 2 * PER_ARM  # ... the pass stands

    forgetful = Evidence(record, settings)  # re-reads every look but assesses only the last
    for at in (record.started_at, *LOOKS):
        forgetful._read(at)
    assert forgetful.comparison.assess().verdict.outcome == "inconclusive"

    for restart_after in range(1, len(LOOKS)):  # a cold session at every point
        cold = Evidence(record, settings)
        cold.catch_up(replace(record, looks=LOOKS[:restart_after]))
        for at in LOOKS[restart_after:]:
            again = cold.look(at)
        assert _last(again)[0] == "promote", restart_after
        assert _last(again)[1] == metric, restart_after
