"""result.json with a control arm (issue 13): each metric's comparison, the control's requests per
step and its status codes round-trip; older result files read as "candidate vs baseline"."""

from __future__ import annotations

import numpy as np

from meshlab.experiment.faults import missing_evidence
from meshlab.report.result import (
    MetricSummary,
    RunResult,
    StepSummary,
    arm_evidence,
    metric_from_json,
    step_from_json,
    traffic_warnings,
)
from meshlab.samples import Samples


def _samples(arms: list[int], statuses: list[int], mirrored: list[bool] | None = None) -> Samples:
    n = len(arms)
    return Samples(
        np.arange(n, dtype=np.float64),
        np.array(arms, dtype=np.int8),
        np.array([f"r{i}" for i in range(n)], dtype=np.str_),
        np.full(n, 10.0),
        np.array(statuses, dtype=np.int64),
        np.array([1] * n, dtype=object),
        np.array(mirrored or [False] * n, dtype=np.bool_),
    )


def test_comparison_and_control_counts_round_trip() -> None:
    metric = MetricSummary(
        "latency-p50", "latency", "pass", 0.01, -0.1, 0.12, 0.2, comparison="candidate vs control"
    )
    step = StepSummary("1", "canary 25%", 25, 0.0, 12.0, 500, 250, "promote", control=245)
    result = RunResult("x", "promote", 0, "ok", metrics=(metric,), steps=(step,), n_control=245)
    data = result.to_json()
    assert data["metrics"][0]["comparison"] == "candidate vs control"
    assert data["steps"][0]["requests"] == {"baseline": 500, "candidate": 250, "control": 245}
    assert data["n_control"] == 245
    back = RunResult.from_json(data)
    assert back.metrics[0].comparison == "candidate vs control"
    assert back.steps[0].control == 245 and back.n_control == 245


def test_older_results_read_as_candidate_vs_baseline_without_a_control() -> None:
    assert metric_from_json({"name": "e", "type": "error-rate"}).comparison == (
        "candidate vs baseline"
    )
    step = step_from_json({"requests": {"baseline": 3, "candidate": 1}})
    assert step.control == 0 and step.requests_json() == {"baseline": 3, "candidate": 1}


def test_the_controls_status_codes_are_listed_and_its_4xx_is_the_reference() -> None:
    statuses = [404] * 30 + [200] * 70 + [404] * 30 + [200] * 70 + [200] * 100
    arms = arm_evidence(_samples([0] * 100 + [1] * 100 + [2] * 100, statuses))
    assert [a.arm for a in arms] == ["baseline", "candidate", "control"]
    assert arms[2].statuses == {200: 100}
    warning = traffic_warnings(arms, "outputs[0]", False, 0)
    assert warning and "control 0%, candidate 30%" in warning[0]
    two = arm_evidence(_samples([0, 1], [200, 200]))
    assert [a.arm for a in two] == ["baseline", "candidate"]  # no control rows: not listed


def test_a_step_with_a_control_needs_control_samples_not_production_ones() -> None:
    counts = {"baseline": 400, "candidate": 200, "control": 0}
    assert missing_evidence("1", counts, 600, 300, True, None, reference="control") == (
        "no control samples in step 1"
    )
    counts["control"] = 150
    assert missing_evidence("1", counts, 750, 300, True, None, reference="control") is None
