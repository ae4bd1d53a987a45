"""``meshlab plan``: predictions within the calibration study's interquartile ranges, the CLI's
output and limits warnings, and one-line errors (exit 2) for bad input."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

import analysis.calibration as cal
from meshlab.cli import main
from meshlab.stats.planning import StepTraffic, estimate, step_setup
from meshlab.stats.simulate import Effect, World

from ..conftest import REPO

CALIBRATION = REPO / "analysis" / "calibration_results.csv"


def calibration() -> dict[str, dict[str, str]]:
    with CALIBRATION.open() as fh:
        return {row["scenario"]: row for row in csv.DictReader(fh)}


def _times(effect: Effect) -> float:
    """The scenario's effect in multiples of its metric's tolerance."""
    return max(
        (effect.latency_ratio - 1) / cal.LAT_TOL,
        effect.error_delta / cal.ERR_TOL,
        effect.divergence / cal.DIV_TOL,
    )


def test_plan_predictions_fall_within_the_calibration_for_every_scenario() -> None:
    """Every scenario of the study, predicted the way ``meshlab plan`` predicts (its look schedule,
    its 40 runs, its stop at the p90): the median within the study's interquartile range, and the
    p90 between the study's 65th and 99th percentiles, each widened by one look of each side's
    schedule. 40 runs miss those windows with probability 0.0006 (median: the 20th of 40 below
    the 25th percentile or above the 75th) and 0.0004 (p90: the 36th of 40 below the 65th or above
    the 99th) per scenario, so the 17 scenarios fail together by chance about 1.7% of the time
    with a fresh seed, and never with this one unless the engine changes. (A window of the 75th
    to 95th percentiles missed 1-3 scenarios for four of five seeds.) Undecided scenarios must be
    predicted undecided."""
    study = calibration()
    assert {sc.name for sc in cal.SCENARIOS} <= set(study), "regenerate the calibration"
    rng = np.random.default_rng(14)
    misses = []
    for sc in cal.SCENARIOS:
        row = study[sc.name]
        metrics = cal.BEYOND if sc.beyond else cal.METRICS
        step = StepTraffic(sc.name, 1.0 if sc.mode == "shadow" else sc.weight, sc.mode, True)
        times = _times(sc.effect)
        setup = step_setup(
            metrics,
            cal.ALPHA / len(metrics),
            cal.BETA,
            step,
            World(bursty=sc.bursty, shared_errors=not sc.independent_errors),
            sc.effect,
            times,
        )
        outcome = "promote" if sc.kind == "aa" else "abort"
        got = estimate(setup, 40, rng, 1.0, outcome)
        # A decision seen at a look happened since the one before: the study's quantiles are
        # known to within its look spacing, the plan's lie up to one plan look late.
        early, late = float(row["look_every"]), float(setup.every)
        q25, q75 = float(row["q25_n"]) - early, float(row["q75_n"]) + late
        p65, p99 = float(row["p65_n"]) - early, float(row["p99_n"]) + late
        if math.isinf(float(row["median_n"])):
            if not math.isinf(got.median_requests):
                misses.append(f"{sc.name}: plan {got.median_requests:.0f}, study undecided")
            continue
        if not q25 <= got.median_requests <= q75:
            misses.append(f"{sc.name}: median {got.median_requests:.0f} not in [{q25}, {q75}]")
        if not p65 <= got.p90_requests <= p99:
            misses.append(f"{sc.name}: p90 {got.p90_requests:.0f} not in [{p65}, {p99}]")
    assert not misses, misses


def spec_file(tmp_path: Path, **limits: object) -> Path:
    data = yaml.safe_load((REPO / "examples" / "canary.yaml").read_text())
    data["spec"]["limits"] = {**data["spec"].get("limits", {}), **limits}
    data["spec"]["analysis"]["metrics"] = [
        {"name": "latency-p50", "type": "latency", "quantile": 0.5, "tolerance": "10%"},
    ]
    data["spec"]["canary"]["steps"] = [50, 100]
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_plan_json_and_a_warning_when_the_step_is_too_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = spec_file(tmp_path, maxDuration="10s")
    assert main(["plan", "-f", str(path), "--rps", "50", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    first, soak = out["steps"]
    assert first["analysed"] and not soak["analysed"]
    assert first["candidate_rps"] == 25
    lat = first["metrics"][0]
    assert lat["name"] == "latency-p50" and first["binds"] == "latency-p50"
    promote, abort2 = lat["promote"], lat["abort_2x"]
    assert 0 < promote["median_requests"] <= promote["p90_requests"]
    assert abort2["median_requests"] < lat["abort_1x"]["median_requests"]
    assert math.isclose(promote["median_seconds"], promote["median_requests"] / 50)
    # a 10 s step at 50 rps is 500 requests: far too few
    assert any("limits.maxDuration" in w for w in out["warnings"])
    assert out["experiment_promote_seconds"][0] == "inf"
    # the warning names the step that ends the run undecided, and the summary does not pretend
    stuck = [w for w in out["warnings"] if "likely to end undecided" in w]
    assert len(stuck) == 1 and f"step {first['label']} needs " in stuck[0], stuck
    assert main(["plan", "-f", str(path), "--rps", "50"]) == 0
    text = capsys.readouterr().out
    assert "a good candidate is likely to end undecided" in text and "never" not in text


def test_plan_text_says_when_it_decides_in_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = spec_file(tmp_path, maxDuration="20m", experimentMaxDuration="1h")
    assert main(["plan", "-f", str(path), "--rps", "50"]) == 0
    out = capsys.readouterr().out
    assert "binds: latency-p50" in out
    assert "the median decision lands in step canary 50%" in out
    assert "warning" not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rps", "0"], "--rps: 0 must be a finite rate above 0"),
        (["--rps", "inf"], "--rps: inf must be a finite rate above 0"),
        (["--reps", "5"], "--reps: 5 is too few"),
        (["--error-rate", "0.7"], "--error-rate: 0.7 must be a rate"),
    ],
)
def test_plan_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    path = spec_file(tmp_path)
    assert main(["plan", "-f", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_plan_rejects_a_missing_file_and_fixed_horizon(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "-f", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    data = yaml.safe_load(spec_file(tmp_path).read_text())
    data["spec"]["analysis"]["method"] = "fixed-horizon"
    (tmp_path / "fixed.yaml").write_text(yaml.safe_dump(data))
    assert main(["plan", "-f", str(tmp_path / "fixed.yaml")]) == 2
    assert "spec.analysis.method" in capsys.readouterr().err


def test_plan_with_and_without_a_control_shows_what_it_costs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """At a 10% step the reference arm shrinks from 90% to 10% of the traffic: the comparison
    needs markedly more requests (normal approximation: (1/.1 + 1/.1) / (1/.1 + 1/.9) = 1.8x)."""
    path = spec_file(tmp_path, maxDuration="1h", experimentMaxDuration="2h")
    data = yaml.safe_load(path.read_text())
    data["spec"]["canary"]["steps"] = [10, 100]
    path.write_text(yaml.safe_dump(data))
    assert main(["plan", "-f", str(path), "--rps", "50", "--control", "both", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    without, with_ = out["without_control"]["steps"][0], out["with_control"]["steps"][0]
    assert without["control_rps"] == 0 and with_["control_rps"] == 5
    ratio = with_["promote"]["median_requests"] / without["promote"]["median_requests"]
    assert 1.3 < ratio < 2.6, ratio
    assert main(["plan", "-f", str(path), "--rps", "50", "--control", "both"]) == 0
    text = capsys.readouterr().out
    assert "control 5 rps" in text and "what the control costs" in text
    assert main(["plan", "-f", str(path), "--control", "maybe"]) == 2
    assert "--control: 'maybe' is not one of" in capsys.readouterr().err
