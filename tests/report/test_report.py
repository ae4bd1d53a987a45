"""Reports rebuilt from a run directory: every section present, HTML self-contained, plots drawn."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from meshlab.errors import ConfigError
from meshlab.report import build_report, load_run
from meshlab.report.record import EVENTS, HISTORY, RESULT, append_jsonl, dump_json
from meshlab.samples import Sample, SampleWriter


def make_run(root: Path, *, shadow: bool = False, verdict: str = "abort") -> Path:
    rng = np.random.default_rng(7)
    rows = []
    for i in range(600):
        arm = "candidate" if i % 4 == 0 else "baseline"
        latency = float(rng.lognormal(2.0 if arm == "baseline" else 2.3, 0.3))
        status = 503 if arm == "candidate" and i % 40 == 0 else 200
        rows.append(Sample(1000.0 + i * 0.05, arm, f"r{i}", latency, status, str(i % 3)))
        if shadow and arm == "baseline":
            rows.append(
                Sample(
                    1000.0 + i * 0.05 + 0.001,
                    "candidate",
                    f"r{i}",
                    latency,
                    200,
                    str((i + (i % 17 == 0)) % 3),
                    True,
                )
            )
    with (root / "samples.csv").open("w") as fh:
        SampleWriter(fh).write(rows)
    metrics = [
        {
            "name": "latency-p50",
            "type": "latency",
            "quantile": 0.5,
            "verdict": "fail",
            "estimate": 0.31,
            "interval": [0.12, 0.55],
            "tolerance": 0.1,
            "n_baseline": 450,
            "n_candidate": 150,
        },
        {
            "name": "errors",
            "type": "error-rate",
            "verdict": "inconclusive",
            "estimate": 0.02,
            "interval": [-0.01, 0.05],
            "tolerance": 0.005,
            "n_baseline": 450,
            "n_candidate": 150,
        },
    ]
    for t in range(1, 30):
        append_jsonl(
            root / HISTORY,
            {
                "time": t,
                "step": "1",
                "verdict": "inconclusive",
                "n_baseline": 15 * t,
                "n_candidate": 5 * t,
                "metrics": [
                    dict(m, interval=[m["interval"][0] - 1 / t, m["interval"][1] + 1 / t])
                    for m in metrics
                ],
            },
        )
    append_jsonl(
        root / EVENTS,
        {"time": 1000.0, "event": "step-applied", "step": "1", "weight": 25, "mirror": 0},
    )
    append_jsonl(root / EVENTS, {"time": 1030.0, "event": "aborted", "step": "rollback"})
    (root / RESULT).write_text(
        dump_json(
            {
                "experiment": "fraud-v2",
                "strategy": "canary",
                "verdict": verdict,
                "exit_code": 1,
                "reason": "latency-p50: latency is worse than baseline",
                "metrics": metrics,
                "decision": {"at_request": 599, "at_time": 30.0},
                "duration_s": 31.0,
                "rollback": {"apply_ms": 3.0, "decision_to_last_candidate_ms": 41.0},
                "guarantee": "P(abort | candidate no worse) <= 5%",
                "steps": [
                    {
                        "step": "1",
                        "label": "canary 25%",
                        "duration_s": 30.0,
                        "requests": {"baseline": 450, "candidate": 150},
                        "outcome": "abort",
                    }
                ],
            }
        )
    )
    return root


@pytest.mark.parametrize("shadow", [False, True])
def test_report_explains_itself_and_is_self_contained(tmp_path: Path, shadow: bool) -> None:
    run = load_run(make_run(tmp_path, shadow=shadow))
    md_path, html_path = build_report(run)
    md = md_path.read_text()
    assert "ABORTED" in md and "rolled back" in md
    assert "latency-p50" in md and "+31%" in md and "interval [+12%, +55%]" in md
    assert "lies entirely above 0" in md  # the failing metric is explained in words
    assert "still contains 0" in md  # the undecided one too
    assert "41 ms" in md  # rollback timing
    html = html_path.read_text()
    assert html.count("data:image/png;base64,") == 5
    assert not re.search(r"(src|href)=['\"]https?://", html), "the HTML must need no network"
    for png in (tmp_path / "plots").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_unfinished_run_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="has not finished"):
        load_run(tmp_path)


def test_result_json_roundtrip(tmp_path: Path) -> None:
    run = load_run(make_run(tmp_path))
    assert json.loads((tmp_path / RESULT).read_text())["verdict"] == run.result.verdict
    assert len(run.samples) == 600 and len(run.history) == 29


NO_DATA = {
    "name": "divergence",
    "type": "prediction-divergence",
    "verdict": "inconclusive",
    "estimate": None,
    "interval": ["-inf", "inf"],
    "tolerance": 0.02,
    "n_baseline": 0,
    "n_candidate": 0,
    "method": "paired disagreement rate confidence sequence",
}


def test_a_metric_without_data_is_explained_and_drawn(tmp_path: Path) -> None:
    """Unbounded intervals arrive as the JSON strings "inf"/"-inf" and the estimate as null."""
    root = make_run(tmp_path, verdict="inconclusive")
    result = json.loads((root / RESULT).read_text())
    result["metrics"].append(NO_DATA)
    (root / RESULT).write_text(dump_json(result))
    append_jsonl(
        root / HISTORY,
        {
            "time": 31,
            "step": "1",
            "verdict": "inconclusive",
            "n_baseline": 0,
            "n_candidate": 0,
            "metrics": [NO_DATA],
        },
    )
    md_path, _ = build_report(load_run(root))
    md = md_path.read_text()
    assert "interval [-inf, +inf]" in md and "no data is never a pass" in md


def test_live_table_renders_unbounded_intervals() -> None:
    from rich.console import Console

    from meshlab.experiment.ports import Snapshot
    from meshlab.experiment.progress import RichProgress

    console = Console(file=io.StringIO(), force_terminal=True, width=160, color_system=None)
    progress = RichProgress(console)
    try:
        progress.look("canary 25%", 25, 0.0, Snapshot("inconclusive", [NO_DATA], 10, 0), 3.0, 30.0)
        progress.event({"event": "step-applied", "step": "1", "weight": 25})
    finally:
        progress.close()
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "divergence" in out and "+inf" in out and "27 s left" in out
