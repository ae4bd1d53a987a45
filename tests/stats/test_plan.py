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

from meshlab.cli import main
from meshlab.spec.analysis import Limits
from meshlab.stats.planning import StepTraffic, plan

from ..conftest import REPO
from .helpers import DIVERGENCE, LATENCY, analysis
from .helpers import ERRORS as ERRORS_1PCT

CALIBRATION = REPO / "analysis" / "calibration_results.csv"


def calibration() -> dict[str, dict[str, str]]:
    with CALIBRATION.open() as fh:
        return {row["scenario"]: row for row in csv.DictReader(fh)}


def test_plan_predictions_fall_within_the_calibration_interquartile_ranges() -> None:
    study = calibration()
    spec = analysis(LATENCY, ERRORS_1PCT, DIVERGENCE)
    rng = np.random.default_rng(11)
    checks: list[tuple[str, float]] = []
    for weight, suffix in ((0.5, ""), (0.05, " 5%")):
        step = StepTraffic(f"canary {weight:.0%}", weight, "canary", True)
        p = plan(spec, Limits(max_duration=3600), [step], 100.0, rng, reps=40).steps[0]
        assert p.promote is not None
        checks.append(
            (
                f"A/A canary 50%{suffix}" if not suffix else "A/A canary 5%",
                p.promote.median_requests,
            )
        )
        if not suffix:
            lat, err, div = p.metrics
            checks += [
                ("latency at tolerance", lat.abort_1x.median_requests),
                ("errors at tolerance", err.abort_1x.median_requests),
                ("divergence at tolerance", div.abort_1x.median_requests),
            ]
        else:
            checks.append(("latency at tolerance 5%", p.metrics[0].abort_1x.median_requests))
    shadow = StepTraffic("shadow", 1.0, "shadow", True)
    s = plan(spec, Limits(max_duration=3600), [shadow], 100.0, rng, reps=40).steps[0]
    assert s.promote is not None
    checks += [
        ("A/A shadow pairs", s.promote.median_requests),
        ("shadow divergence at tolerance", s.metrics[2].abort_1x.median_requests),
    ]
    misses = []
    for name, predicted in checks:
        row = study[name]
        low, high = float(row["q25_n"]), float(row["q75_n"])
        # a prediction is a look count: allow one plan look beyond the study's quartiles
        slack = max(200.0, float(row["look_every"]))
        if not low - slack <= predicted <= high + slack:
            misses.append(f"{name}: plan {predicted:.0f} outside [{low:.0f}, {high:.0f}]")
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
        (["--rps", "0"], "--rps: 0 must be above 0"),
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
