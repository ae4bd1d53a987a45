"""MLServer as a real client: meshlab's CLI against real MLServer servers on the local mesh.

The example experiments of ``examples/mlserver/`` run end to end through ``meshlab ... start``:
a good candidate is promoted (meshlab starts both MLServers itself from the example file, with
``{port:grpc}`` and ``{port:metrics}`` and per-model readiness), a candidate trained on shuffled
labels is aborted on divergence, a candidate served under another model name is stopped by the
pre-flight with exit 2. Then every fault candidate, with and without the pre-flight, is shown
never to be promoted; the table of verdict, exit code and requests to the decision is printed
(``pytest -s``) and written to ``fault-table.md`` in the test's temporary directory.

Faults: 4xx (wrong model name, and ``protocol: v1``, which MLServer does not serve), 5xx (a custom
MLServer runtime that always raises), unreachable (a ``url`` with nothing listening), empty
predictions (a runtime answering 200 with no data), wrong extractor (``predictions[0]``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import EXAMPLE, REPO, Server, free_port, require_mlserver, running, trained

PAYLOADS = REPO / "loadtests" / "data" / "breast_cancer.v2.jsonl"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    require_mlserver()
    trained()
    variants = {
        "v1": "breast-cancer",
        "shuffled": "breast-cancer",
        "wrong-name": "breast-cancer-v2",
        "fault-error": "breast-cancer",
        "fault-empty": "breast-cancer",
    }
    with running(variants, tmp_path_factory.mktemp("mlserver-logs")) as started:
        yield started


@dataclass(frozen=True)
class Run:
    code: int
    stderr: str
    result: dict[str, Any] | None
    run_dir: Path


def meshlab_start(spec: Path, runs: Path, *extra: str, strategy: str = "canary") -> Run:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "meshlab",
            strategy,
            "start",
            "-f",
            str(spec),
            "--json",
            "--runs",
            str(runs),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=REPO,
    )
    dirs = sorted(runs.glob("*/"))
    result = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else None
    return Run(proc.returncode, proc.stderr, result, dirs[-1] if dirs else runs)


def spec_file(
    tmp: Path,
    name: str,
    candidate_url: str,
    baseline_url: str,
    *,
    source: str = "canary.yaml",
    load: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
) -> Path:
    """An example spec on already running servers (``url:``), with absolute payloads."""
    data = yaml.safe_load((EXAMPLE / source).read_text())
    data["metadata"]["name"] = name
    data["spec"]["local"] = {
        "baseline": {"url": baseline_url},
        "candidate": {"url": candidate_url},
    }
    data["spec"]["load"]["payloads"] = str(PAYLOADS)
    data["spec"]["load"].update(load or {})
    if data["spec"]["strategy"] == "canary":
        data["spec"]["canary"]["steps"] = [50]
    data["spec"]["limits"].update(limits or {})
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_good_candidate_is_promoted_from_the_example_file(tmp_path: Path) -> None:
    """meshlab starts both MLServers itself: {port}, {port:grpc}, {port:metrics}, model readiness."""
    require_mlserver()
    trained()
    run = meshlab_start(EXAMPLE / "canary.yaml", tmp_path)
    assert run.code == 0, run.stderr[-2000:]
    assert run.result is not None and run.result["verdict"] == "promote"
    evidence = run.result["evidence"]
    assert evidence["arms"]["candidate"]["statuses"] == {
        "200": evidence["arms"]["candidate"]["requests"]
    }
    assert {(p["arm"], p["via"]) for p in evidence["preflight"]} == {
        ("baseline", "direct"),
        ("candidate", "direct"),
        ("baseline", "sidecar"),
        ("candidate", "sidecar"),
        ("baseline", "mesh"),
    }
    report = (run.run_dir / "report.md").read_text()
    assert "p90 latency" in report and "| candidate |" in report


def test_shuffled_labels_are_aborted_on_divergence(
    servers: dict[str, Server], tmp_path: Path
) -> None:
    spec = spec_file(
        tmp_path,
        "mls-shuffled",
        servers["shuffled"].url,
        servers["v1"].url,
        source="shadow-shuffled.yaml",
    )
    run = meshlab_start(spec, tmp_path / "runs", strategy="shadow")
    assert run.code == 1, run.stderr[-2000:]
    assert run.result is not None and "divergence" in run.result["reason"]


def test_wrong_model_name_stops_in_preflight(servers: dict[str, Server], tmp_path: Path) -> None:
    spec = spec_file(tmp_path, "mls-wrong-name", servers["wrong-name"].url, servers["v1"].url)
    run = meshlab_start(spec, tmp_path / "runs")
    assert run.code == 2, run.stderr[-2000:]
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith(
        "meshlab: error: pre-flight: candidate: POST /v2/models/breast-cancer/infer -> 404 "
        '{"error":"Model breast-cancer not found"}'
    ), line


FAULTS: list[tuple[str, str, dict[str, Any]]] = [
    # (fault, candidate server or "unreachable", load overrides)
    ("4xx: wrong model name", "wrong-name", {}),
    ("4xx: protocol v1 (MLServer has no V1 REST)", "v1", {"protocol": "v1"}),
    ("5xx: every inference fails", "fault-error", {}),
    ("unreachable: nothing listens at the url", "unreachable", {}),
    ("empty predictions", "fault-empty", {}),
    ("wrong extractor", "v1", {"extractor": "predictions[0]"}),
]


def test_no_fault_candidate_is_ever_promoted(
    servers: dict[str, Server], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        "| fault candidate | pre-flight | verdict | exit code | requests to the decision |",
        "|---|---|---|---|---|",
    ]
    dead = f"http://127.0.0.1:{free_port()}"
    for i, (fault, variant, load) in enumerate(FAULTS):
        candidate = dead if variant == "unreachable" else servers[variant].url
        baseline = servers["v1"].url
        for preflight in (True, False):
            if fault.startswith("4xx: protocol") and not preflight:
                continue  # the same 404s as the wrong name; keeps the test time bounded
            spec = spec_file(
                tmp_path,
                f"mls-fault-{i}-{int(preflight)}",
                candidate,
                baseline,
                load=load,
                limits={"minSamples": 100, "maxDuration": "5s", "experimentMaxDuration": "6s"},
            )
            run = meshlab_start(
                spec,
                tmp_path / f"runs-{i}-{int(preflight)}",
                *(() if preflight else ("--skip-preflight",)),
            )
            verdict = run.result["verdict"] if run.result else "stopped before step 1"
            assert verdict != "promote" and run.code != 0, (fault, preflight, run.stderr[-1500:])
            if preflight and run.code == 2:  # the spec can fix it: one line, nothing recorded
                assert run.result is None, (fault, run.stderr[-1500:])
                line = run.stderr.strip().splitlines()[-1]
                assert line.startswith("meshlab: error: pre-flight: "), line
                probes = json.loads((run.run_dir / "preflight.json").read_text())
                to_decision = f"{len(probes)} pre-flight requests, 0 live"
                verdict = f"stopped: {line.removeprefix('meshlab: error: pre-flight: ')[:150]}"
            elif preflight:  # it cannot (unreachable, 5xx): a recorded infrastructure failure
                assert run.code == 4 and run.result is not None, (fault, run.stderr[-1500:])
                reason = run.result["reason"]
                prefix = "infrastructure failure: pre-flight: "
                assert reason.startswith(prefix) and reason.endswith("rolled back"), reason
                assert run.result["steps"] == [] and run.result["decided_after"] is None
                probes = json.loads((run.run_dir / "preflight.json").read_text())
                to_decision = f"{len(probes)} pre-flight requests, 0 live"
                verdict = f"stopped: {reason.removeprefix(prefix)[:150]}"
            else:
                assert run.result is not None, run.stderr[-1500:]
                decided = run.result["decided_after"]
                to_decision = (
                    f"{decided['requests']} ({decided['seconds_after_first_request']:.1f} s)"
                    if decided
                    else f"none ({run.result['requests']} recorded)"
                )
                verdict = f"{verdict}: {run.result['reason'][:90]}"
                if "prediction" in fault or "extractor" in fault:
                    warnings = run.result["evidence"]["warnings"]
                    assert any("matched nothing" in w for w in warnings), warnings
            rows.append(
                f"| {fault} | {'on' if preflight else 'skipped'} | {verdict} | {run.code} | "
                f"{to_decision} |"
            )
    table = "\n".join(rows)
    (tmp_path / "fault-table.md").write_text(table + "\n")
    with capsys.disabled():
        print("\n" + table)
