"""The typed result and its evidence: status codes per arm, missing predictions, warnings, JSON."""

from __future__ import annotations

import json
from pathlib import Path

from meshlab.report import build_report, load_run
from meshlab.report.record import RESULT, dump_json
from meshlab.report.result import (
    DecidedAfter,
    Evidence,
    MetricSummary,
    ProbeAnswer,
    RunResult,
    StepSummary,
    arm_evidence,
    traffic_warnings,
)
from meshlab.samples import Sample, Samples, SampleWriter


def _rows(candidate_status: int, candidate_prediction: str = "1") -> list[Sample]:
    rows = []
    for i in range(400):
        arm = "candidate" if i % 2 else "baseline"
        status = candidate_status if arm == "candidate" else 200
        pred = (candidate_prediction if arm == "candidate" else "1") if status == 200 else ""
        rows.append(Sample(1000.0 + i * 0.01, arm, f"r{i}", 5.0, status, pred))
    return rows


def test_status_codes_per_arm_and_the_404_warning() -> None:
    arms = arm_evidence(Samples.from_rows(_rows(404)))
    base, cand = arms
    assert base.statuses == {200: 200} and base.errors == 0
    assert cand.statuses == {404: 200} and cand.errors == 200 and cand.share_4xx == 1.0
    warnings = traffic_warnings(arms, "outputs[0].data[0]", True, 0)
    assert any("4xx answers differ" in w and "candidate 100%" in w for w in warnings)
    expected = arm_evidence(Samples.from_rows(_rows(404)), expected=[404])
    assert expected[1].errors == 0  # expected: not an error, but still shown and still warned
    assert any("4xx" in w for w in traffic_warnings(expected, "x", False, 0))


def test_an_extractor_that_matched_nothing_is_named() -> None:
    arms = arm_evidence(Samples.from_rows(_rows(200, candidate_prediction="")))
    assert arms[1].no_prediction == 200 and arms[1].share_no_prediction == 1.0
    warnings = traffic_warnings(arms, "predictions[0]", True, 3)
    assert any(
        "'predictions[0]' matched nothing in any of the candidate's 200" in w for w in warnings
    )
    assert any("3 requests got no x-meshlab-arm" in w for w in warnings)
    assert traffic_warnings(arm_evidence(Samples.from_rows(_rows(200))), "p", True, 0) == ()


def _result() -> RunResult:
    arms = arm_evidence(Samples.from_rows(_rows(404)))
    return RunResult(
        experiment="fraud-v2",
        verdict="abort",
        exit_code=1,
        reason="errors: error-rate is worse than baseline",
        strategy="canary",
        decided_after=DecidedAfter(240, 2.4),
        metrics=(
            MetricSummary("latency-p90", "latency", "pass", -0.2, -0.3, 0.01, 0.1, quantile=0.9),
            MetricSummary("errors", "error-rate", "fail", 1.0, 0.9, 1.0, 0.01),
            MetricSummary(
                "divergence",
                "prediction-divergence",
                "inconclusive",
                None,
                float("-inf"),
                float("inf"),
                0.02,
            ),
        ),
        steps=(StepSummary("1", "canary 10%", 10, 0.0, 2.5, 200, 200, "abort"),),
        rollback={"apply_ms": 3.0, "decision_to_last_candidate_ms": 12.0},
        evidence=Evidence(
            arms=arms,
            expected_statuses=(),
            extractor="outputs[0].data[0]",
            unattributed=2,
            recorded=400,
            analysed=240,
            not_analysed=(("after the decision (in flight during the rollback)", 160),),
            warnings=traffic_warnings(arms, "outputs[0].data[0]", True, 2),
            preflight=(
                ProbeAnswer(
                    "baseline",
                    "direct",
                    "http://127.0.0.1:1",
                    "/v2/models/m/infer",
                    200,
                    "{}",
                    "1",
                    "",
                    1,
                ),
            ),
            late=(("collector", 3), ("load", 0)),
        ),
    )


def test_json_roundtrip_is_lossless() -> None:
    result = _result()
    text = dump_json(result.to_json())
    back = RunResult.from_json(json.loads(text))
    assert back == result
    data = json.loads(text)
    assert data["evidence"]["arms"]["candidate"]["statuses"] == {"404": 200}
    assert data["decided_after"] == {"requests": 240, "seconds_after_first_request": 2.4}
    assert data["metrics"][2]["interval"] == ["-inf", "inf"]
    assert data["evidence"]["late_rows"] == {
        "total": 3,
        "by_source": {"collector": 3, "load": 0},
        "handling": "fed to the statistics on arrival",
    }


def test_older_result_files_still_read() -> None:
    old = {
        "experiment": "x",
        "verdict": "promote",
        "exit_code": 0,
        "reason": "",
        "decision": {"at_request": 99, "at_time": 3.0},
        "metrics": [],
    }
    back = RunResult.from_json(old)
    assert back.decided_after == DecidedAfter(100, 3.0) and back.evidence is None


def test_report_shows_evidence_quantile_and_one_decided_after(tmp_path: Path) -> None:
    with (tmp_path / "samples.csv").open("w") as fh:
        SampleWriter(fh).write(_rows(404))
    (tmp_path / RESULT).write_text(dump_json(_result().to_json()))
    md_path, html_path = build_report(load_run(tmp_path))
    md = md_path.read_text()
    assert "p90 latency" in md and "p50" not in md  # the metric's real quantile
    assert "| candidate | 200 | 404: 200 | 200 | 100% |" in md
    assert "4xx answers differ between the arms" in md
    assert "decided after 240 requests, 2.4 s after the first request" in md
    assert "requests recorded: 400; analysed: 240; unattributed" in md
    assert "not analysed: 160 after the decision" in md
    assert "pre-flight: 1 payloads to baseline (direct)" in md
    assert "late rows: 3 (collector 3, load 0), fed to the statistics on arrival" in md
    assert "404: 200" in html_path.read_text()
