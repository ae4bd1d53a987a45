"""Fault injection through the real CLI on the real local mesh (issue 17, items 3 and 4).

Each row of the README's fault model is injected into a real ``python -m meshlab canary start``
(real Envoy, real Locust, real model servers on 127.0.0.1) at a random instant of step 1: the
process is found by PID (the one whose stdout is that component's log in the run directory) and
sent SIGKILL, or SIGSTOP for "stops answering" (continued in ``finally``). Each row asserts the
exit code, the reason, the last routes applied (the rollback manifest last; the outbound Envoy's
RDS file on the baseline), the state file, that no candidate request started after the rollback,
and that no output says "rolled back" next to "ROLLBACK FAILED". The time from the fault to the
rollback being applied is printed per row (``FAULT-TIMING``). A candidate that degrades (the ramp
switches of examples/models/serve.py) must be aborted by the statistics within step 1.

The random instant comes from ``MESHLAB_FAULT_SEED`` (printed, so a failure can be replayed).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.experiment.test_end_to_end import Meshlab, _assert_on_baseline_after, meshlab

pytestmark = [pytest.mark.envoy, pytest.mark.slow]
__all__ = ["meshlab"]  # the fixture, shared

SEED = int(os.environ.get("MESHLAB_FAULT_SEED", str(int(time.time()))))


@dataclass(frozen=True)
class Row:
    name: str
    log: str  # the component's log, relative to the run directory (its process's stdout)
    sig: signal.Signals
    exit_code: int
    reason: str  # a part of the reason
    phase: str  # the state file's final phase


ROWS = [
    Row("candidate server SIGKILL", "mesh/candidate.model.log", signal.SIGKILL, 1,
        "candidate crashed after", "aborted"),
    Row("candidate sidecar SIGKILL", "mesh/candidate-sidecar.log", signal.SIGKILL, 1,
        "candidate crashed after", "aborted"),
    Row("candidate server SIGSTOP", "mesh/candidate.model.log", signal.SIGSTOP, 1,
        "candidate crashed after", "aborted"),
    Row("baseline server SIGKILL", "mesh/baseline.model.log", signal.SIGKILL, 4,
        "the baseline failed", "failed"),
    Row("outbound Envoy SIGKILL", "mesh/outbound.log", signal.SIGKILL, 4,
        "infrastructure failure", "failed"),
    Row("Locust SIGKILL", "load/locust.log", signal.SIGKILL, 4,
        "infrastructure failure", "failed"),
]  # fmt: skip


def _spec(tmp: Path) -> Path:
    spec: dict[str, Any] = yaml.safe_load((REPO / "examples/canary.yaml").read_text())
    s = spec["spec"]
    # step 1 stays undecided for the fault: too few requests to promote, a good candidate
    s["limits"] = {"minSamples": 100_000, "maxDuration": "60s", "experimentMaxDuration": "90s"}
    s["load"]["duration"] = "90s"
    s["load"]["payloads"] = str(REPO / "loadtests/data/breast_cancer.v2.jsonl")
    for version in ("baseline", "candidate"):
        s["local"][version]["command"] = [
            c.replace("{here}", str(REPO / "examples")) for c in s["local"][version]["command"]
        ]
    target = tmp / "canary.yaml"
    target.write_text(yaml.safe_dump(spec))
    return target


def _pid_writing_to(log: Path, timeout: float = 10.0) -> int:
    """The process whose stdout is ``log`` (the mesh and the load runner start each child so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(entry / "fd" / "1") == str(log):
                        return int(entry.name)
        time.sleep(0.2)
    raise AssertionError(f"no process writes to {log}")


@contextlib.contextmanager
def _continued(pid: int, sig: signal.Signals) -> Iterator[None]:
    try:
        yield
    finally:
        if sig == signal.SIGSTOP:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _routes_on_baseline(run_dir: Path) -> None:
    rds = json.loads((run_dir / "mesh/rds/routes.json").read_text())
    assert '"step":"rollback"' in rds["version_info"], rds["version_info"]
    clusters = {
        route["route"]["cluster"]
        for resource in rds["resources"]
        for host in resource["virtual_hosts"]
        for route in host["routes"]
    }
    assert clusters == {"outbound|8080|v1|breast-cancer"}, clusters


def _check_outputs(out: str, err: str, run_dir: Path) -> None:
    texts = [out, err, *(p.read_text() for p in run_dir.glob("*.jsonl")), *(
        p.read_text() for p in run_dir.glob("report.*") if p.suffix != ".html"
    )]  # fmt: skip
    for text in texts:
        assert not ("rolled back" in text and "ROLLBACK FAILED" in text), text[-2000:]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_fault_in_step_1_ends_by_its_rule(meshlab: Meshlab, row: Row) -> None:
    rng = random.Random(f"{SEED}-{row.name}")
    spec = _spec(meshlab.tmp)
    proc = meshlab.start(
        "canary", "start", "-f", str(spec), "--json", "--runs", str(meshlab.tmp / "runs")
    )
    meshlab.wait_for("step-applied", timeout=90)
    run_dir = meshlab.run_dir()
    pid = _pid_writing_to(run_dir / row.log)
    delay = rng.uniform(0.5, 4.0)
    time.sleep(delay)
    with _continued(pid, row.sig):
        os.kill(pid, row.sig)
        fault_at = time.time()
        out, err = proc.communicate(timeout=90)
    print(f"seed {SEED}: {row.name} {delay:.2f}s into step 1")
    assert proc.returncode == row.exit_code, (proc.returncode, err[-3000:])
    result = json.loads(out)
    assert row.reason in result["reason"], result["reason"]
    assert "rolled back" in result["reason"] or result["verdict"] == "abort", result["reason"]
    assert "ROLLBACK FAILED" not in out + err
    _check_outputs(out, err, run_dir)
    rollback = result["rollback"]
    assert rollback is not None, result
    manifests = sorted((run_dir / "manifests").glob("*.yaml"))
    assert "rollback" in manifests[-1].name, [m.name for m in manifests]
    _routes_on_baseline(run_dir)
    state = json.loads(next((meshlab.tmp / "home" / "experiments").glob("*.json")).read_text())
    assert (state["phase"], state["step"]) == (row.phase, "rollback"), state
    assert result["steps"], result
    _assert_on_baseline_after(run_dir, rollback["applied_at"])
    took = rollback["applied_at"] - fault_at
    print(f"FAULT-TIMING {row.name}: fault -> rollback applied {took:.2f} s")
    assert 0 < took < 15, took


def test_a_slowly_degrading_candidate_is_aborted_before_its_step_ends(meshlab: Meshlab) -> None:
    """examples/canary-bad-ramp.yaml: latency and 5xx share ramp up; the statistics abort it."""
    proc = meshlab.start(
        "canary",
        "start",
        "-f",
        str(REPO / "examples/canary-bad-ramp.yaml"),
        "--json",
        "--runs",
        str(meshlab.tmp / "runs"),
    )
    out, err = proc.communicate(timeout=150)
    assert proc.returncode == 1, (proc.returncode, err[-3000:])
    result = json.loads(out)
    assert result["verdict"] == "abort", result["reason"]
    steps = result["steps"]
    assert len(steps) == 1 and steps[0]["outcome"] == "abort", steps
    assert steps[0]["duration_s"] < 60.0  # before step 1's maxDuration
    assert "ROLLBACK FAILED" not in out + err
    print(f"FAULT-TIMING ramp: aborted {steps[0]['duration_s']:.1f} s into step 1")
