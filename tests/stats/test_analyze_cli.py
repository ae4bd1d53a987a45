"""``meshlab analyze`` through a local typer app: exit codes, JSON keys, replay, modes, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
import yaml
from typer.testing import CliRunner

from meshlab.cli.analyze import register
from meshlab.errors import ConfigError, SamplesError
from meshlab.samples import Sample, samples_to_csv

from ..conftest import EXAMPLE


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def main() -> None:  # keeps "analyze" a subcommand, as in the real app
        pass

    return app


def write_run(path: Path, n: int, ratio: float, seed: int = 0, shadow: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    rows: list[Sample] = []
    for i in range(n):
        label = "fraud" if rng.random() < 0.1 else "legit"
        base = float(np.exp(rng.normal(3.0, 0.3)))
        if shadow:
            rows.append(Sample(1000 + i * 0.01, "baseline", f"r{i}", base, 200, json.dumps(label)))
            rows.append(
                Sample(
                    1000 + i * 0.01 + 0.001,
                    "candidate",
                    f"r{i}",
                    base * ratio,
                    200,
                    json.dumps(label),
                    mirrored=True,
                )
            )
            continue
        arm = "candidate" if rng.random() < 0.5 else "baseline"
        lat = base * (ratio if arm == "candidate" else 1.0)
        rows.append(Sample(1000 + i * 0.01, arm, f"r{i}", lat, 200, json.dumps(label)))
    path.write_text(samples_to_csv(rows))
    return path


def spec(tmp_path: Path, strategy: str = "canary", method: str = "sequential") -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["spec"]["strategy"] = strategy
    data["spec"]["analysis"]["method"] = method
    out = tmp_path / "experiment.yaml"
    out.write_text(yaml.safe_dump(data))
    return out


def test_slow_candidate_aborts_with_exit_1_and_json_keys(app: typer.Typer, tmp_path: Path) -> None:
    run = write_run(tmp_path / "s.csv", 2000, ratio=1.4)
    r = CliRunner().invoke(app, ["analyze", str(run), "-f", str(spec(tmp_path)), "--json"])
    assert r.exit_code == 1, r.output
    out = json.loads(r.output)
    assert out["verdict"] == "abort"
    assert out["decision"] == {"at_request": 1999, "at_time": pytest.approx(19.99)}
    lat = out["metrics"][0]
    assert {
        "name",
        "type",
        "verdict",
        "estimate",
        "interval",
        "tolerance",
        "n_baseline",
        "n_candidate",
    } <= set(lat)
    assert lat["verdict"] == "fail" and lat["interval"][0] > 0


def test_replay_stops_at_the_first_decision(app: typer.Typer, tmp_path: Path) -> None:
    run = write_run(tmp_path / "s.csv", 3000, ratio=1.5)
    r = CliRunner().invoke(
        app,
        ["analyze", str(run), "-f", str(spec(tmp_path)), "--replay", "--every", "100", "--json"],
    )
    out = json.loads(r.output)
    assert r.exit_code == 1 and out["decision"]["at_request"] < 2999
    assert (out["decision"]["at_request"] + 1) % 100 == 0


def test_too_little_data_is_inconclusive_exit_3(app: typer.Typer, tmp_path: Path) -> None:
    run = write_run(tmp_path / "s.csv", 60, ratio=1.0)
    r = CliRunner().invoke(app, ["analyze", str(run), "-f", str(spec(tmp_path))])
    assert r.exit_code == 3, r.output
    assert "verdict: inconclusive" in r.output


def test_shadow_mode_comes_from_the_strategy(app: typer.Typer, tmp_path: Path) -> None:
    run = write_run(tmp_path / "s.csv", 3000, ratio=1.0, shadow=True)
    r = CliRunner().invoke(
        app, ["analyze", str(run), "-f", str(spec(tmp_path, "shadow")), "--json"]
    )
    out = json.loads(r.output)
    assert out["mode"] == "shadow"
    div = next(m for m in out["metrics"] if m["type"] == "prediction-divergence")
    assert div["n_baseline"] == 3000 and div["estimate"] == 0.0
    forced = CliRunner().invoke(
        app,
        ["analyze", str(run), "-f", str(spec(tmp_path, "shadow")), "--json", "--mode", "canary"],
    )
    assert json.loads(forced.output)["mode"] == "canary"


def test_fixed_horizon_replay_warns(app: typer.Typer, tmp_path: Path) -> None:
    run = write_run(tmp_path / "s.csv", 400, ratio=1.0)
    r = CliRunner().invoke(
        app,
        [
            "analyze",
            str(run),
            "-f",
            str(spec(tmp_path, method="fixed-horizon")),
            "--replay",
            "--every",
            "100",
        ],
    )
    assert "one look only" in r.output  # the warning goes to stderr, mixed in by CliRunner


def test_bad_input_raises_config_errors(app: typer.Typer, tmp_path: Path) -> None:
    run = write_run(tmp_path / "s.csv", 100, ratio=1.0)
    bad = CliRunner().invoke(app, ["analyze", str(run), "-f", str(spec(tmp_path)), "--mode", "x"])
    assert isinstance(bad.exception, ConfigError) and bad.exception.exit_code == 2
    every = CliRunner().invoke(
        app, ["analyze", str(run), "-f", str(spec(tmp_path)), "--replay", "--every", "0"]
    )
    assert isinstance(every.exception, ConfigError)
    alone = CliRunner().invoke(
        app, ["analyze", str(run), "-f", str(spec(tmp_path)), "--every", "5"]
    )
    assert isinstance(alone.exception, ConfigError) and "needs --replay" in str(alone.exception)
    (tmp_path / "broken.csv").write_text("not,a,samples,file\n")
    broken = CliRunner().invoke(
        app, ["analyze", str(tmp_path / "broken.csv"), "-f", str(spec(tmp_path))]
    )
    assert isinstance(broken.exception, SamplesError)


def test_a_file_mixing_prometheus_and_raw_rows_is_refused(app: typer.Typer, tmp_path: Path) -> None:
    """A Prometheus + collector run records Prometheus's pseudo-samples beside the raw rows: one
    comparison over both would count every request twice, so analyze refuses (exit 2) instead."""
    rows = [
        Sample(1000.0 + i, arm, f"{prefix}{arm}-{i}", 20.0, 200, json.dumps("legit"))
        for i in range(40)
        for arm in ("baseline", "candidate")
        for prefix in ("prom-", "r")
    ]
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(samples_to_csv(rows))
    r = CliRunner().invoke(app, ["analyze", str(mixed), "-f", str(spec(tmp_path))])
    assert isinstance(r.exception, ConfigError) and r.exception.exit_code == 2
    assert "prom-*" in str(r.exception) and "twice" in str(r.exception)
    alone = tmp_path / "prom.csv"
    alone.write_text(samples_to_csv([s for s in rows if s.request_id.startswith("prom-")]))
    ok = CliRunner().invoke(app, ["analyze", str(alone), "-f", str(spec(tmp_path))])
    assert not isinstance(ok.exception, ConfigError), ok.output


def test_the_output_says_what_the_file_holds_per_arm(app: typer.Typer, tmp_path: Path) -> None:
    """Status codes, errors and missing predictions per arm, and the rows read but not compared:
    a canary with a control compares the candidate with the control, so production is listed as
    not compared, and a 2xx answer with no prediction is counted and warned about."""
    rows = []
    for i in range(300):
        arm = ("baseline", "baseline", "candidate", "control")[i % 4]
        status = 500 if arm == "candidate" and i % 40 == 2 else 200
        label = None if arm == "candidate" and i % 40 == 6 else json.dumps("legit")
        rows.append(Sample(1000 + i * 0.01, arm, f"r{i}", 20.0 + i % 7, status, label or ""))
    run = tmp_path / "s.csv"
    run.write_text(samples_to_csv(rows))
    r = CliRunner().invoke(app, ["analyze", str(run), "-f", str(spec(tmp_path)), "--json"])
    out = json.loads(r.stdout)["evidence"]
    cand = out["arms"]["candidate"]
    assert cand["requests"] == 75 and cand["statuses"] == {"200": 67, "500": 8}
    assert cand["errors"] == 8 and cand["no_prediction"] == 8
    assert out["arms"]["control"]["requests"] == 75 and out["arms"]["baseline"]["requests"] == 150
    assert out["recorded"] == 300 and out["analysed"] == 150
    assert out["not_analysed"] == [
        {"reason": "baseline requests (a canary compares candidate vs control)", "requests": 150}
    ]
    assert any("answers had no prediction" in w for w in out["warnings"])
    text = CliRunner().invoke(app, ["analyze", str(run), "-f", str(spec(tmp_path))]).stdout
    assert "seen in the file: 300 rows, 150 compared" in text
    assert "candidate" in text and "200: 67, 500: 8  errors 8  no prediction 8" in text


def test_shadow_requests_whose_copy_never_arrived_are_named(
    app: typer.Typer, tmp_path: Path
) -> None:
    run = write_run(tmp_path / "s.csv", 400, ratio=1.0, shadow=True)
    lines = run.read_text().splitlines()
    kept = [line for i, line in enumerate(lines) if i == 0 or not (i % 2 == 0 and i > 600)]
    run.write_text("\n".join(kept) + "\n")  # copies of the last 100 requests never arrived
    r = CliRunner().invoke(
        app, ["analyze", str(run), "-f", str(spec(tmp_path, "shadow")), "--json"]
    )
    out = json.loads(r.stdout)["evidence"]
    assert (
        out["arms"]["baseline"]["requests"] == 400 and out["arms"]["candidate"]["requests"] == 300
    )
    assert out["not_analysed"] == [
        {"reason": "baseline requests with no mirrored copy (no pair to compare)", "requests": 100}
    ]
    assert out["analysed"] == 600
