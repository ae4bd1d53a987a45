"""End to end on the real local mesh: verdicts, and every way of stopping meshlab mid-experiment.

Each test runs the real ``meshlab`` CLI in its own process group (real Envoy, real Locust, real
model servers on 127.0.0.1) and stops it by process group in ``finally`` whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshlab.samples import read_samples
from tests.conftest import REPO

pytestmark = [pytest.mark.envoy, pytest.mark.slow]
DEMO = REPO / "examples" / "demo"


class Meshlab:
    """One ``meshlab`` process with its own MESHLAB_HOME and runs directory."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = {**os.environ, "MESHLAB_HOME": str(tmp / "home"), "PYTHONUNBUFFERED": "1"}
        self.procs: list[subprocess.Popen[str]] = []
        self.expect_runs = 1

    def start(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meshlab", *args],
            cwd=REPO,
            env=self.env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "meshlab", *args],
            cwd=REPO,
            env=self.env,
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def run_dir(self) -> Path:
        dirs = sorted((self.tmp / "runs").glob("*/"))
        assert len(dirs) >= self.expect_runs, "no run directory yet"
        return dirs[-1]

    def events(self) -> list[dict[str, Any]]:
        try:
            path = self.run_dir() / "events.jsonl"
        except AssertionError:
            return []
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_for(self, event: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events():
                if e["event"] == event:
                    return e
            proc = self.procs[-1]
            assert proc.poll() is None, f"meshlab exited early: {proc.communicate()[1][-2000:]}"
            time.sleep(0.2)
        raise AssertionError(f"no {event!r} event within {timeout}s: {self.events()}")

    def kill_all(self) -> None:
        """SIGTERM (meshlab rolls back and stops its children), then SIGKILL what is left."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=30)  # also closes the pipes of processes already gone
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate(timeout=10)


@pytest.fixture
def meshlab(tmp_path: Path) -> Iterator[Meshlab]:
    m = Meshlab(tmp_path)
    try:
        yield m
    finally:
        m.kill_all()
        deadline = time.monotonic() + 15  # children stopping after their parent went away
        while _processes_mentioning(str(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.2)
        leftovers = _processes_mentioning(str(tmp_path))
        described = [_cmdline(pid)[:160] for pid in leftovers]
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not leftovers, f"processes left behind: {described}"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "(gone)"


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line mentions ``text`` (every child meshlab starts uses the run dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found


def _assert_on_baseline_after(run_dir: Path, since: float) -> None:
    """No request that started after the rollback (plus in-flight slack) reached the candidate."""
    samples = read_samples(run_dir / "samples.csv")
    late = samples.take((samples.timestamp > since + 0.5) & (samples.arm == 1) & ~samples.mirrored)
    assert len(late) == 0, f"{len(late)} requests reached the candidate after the rollback"


def _wait_exit(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_demo_verdicts_and_reports(meshlab: Meshlab) -> None:
    """The README's main job: good canary promoted, bad canary aborted, broken shadow aborted."""
    proc = meshlab.start("demo", "--quiet", "--runs", str(meshlab.tmp / "runs"))
    code, out, err = _wait_exit(proc, timeout=240)
    assert code == 0, err[-3000:]
    results = {
        json.loads((d / "result.json").read_text())["experiment"]: d
        for d in (meshlab.tmp / "runs").glob("*/")
    }
    verdicts = {
        name: json.loads((d / "result.json").read_text())["verdict"] for name, d in results.items()
    }
    assert verdicts == {
        "demo-canary-good": "promote",
        "demo-canary-bad": "abort",
        "demo-shadow-bad": "abort",
    }
    for d in results.values():
        assert (d / "report.html").stat().st_size > 10_000 and (d / "report.md").exists()
    bad = json.loads((results["demo-canary-bad"] / "result.json").read_text())
    assert bad["rollback"]["decision_to_last_candidate_ms"] < 5_000
    _assert_on_baseline_after(results["demo-canary-bad"], bad["rollback"]["applied_at"])
    shadow = read_samples(results["demo-shadow-bad"] / "samples.csv")
    # users only ever got the baseline; every mirrored copy pairs with a primary by request id
    assert shadow.mirrored.sum() >= 20 and (shadow.arm[~shadow.mirrored] == 0).all()
    assert set(shadow.request_id[shadow.mirrored]) <= set(shadow.request_id[~shadow.mirrored])
    assert "report.html" in out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_step_rolls_back_before_exiting(meshlab: Meshlab, sig: signal.Signals) -> None:
    proc = meshlab.start(
        "canary",
        "start",
        "-f",
        str(DEMO / "canary-good.yaml"),
        "--json",
        "--runs",
        str(meshlab.tmp / "runs"),
    )
    meshlab.wait_for("step-applied")
    time.sleep(2.0)  # traffic flowing to both arms at 25%
    os.killpg(proc.pid, sig) if sig == signal.SIGINT else proc.send_signal(sig)
    code, out, _ = _wait_exit(proc)
    assert code == 130
    result = json.loads(out)
    assert result["exit_code"] == 130 and result["final_step"] == "rollback"
    run_dir = meshlab.run_dir()
    assert sorted(p.name for p in (run_dir / "manifests").glob("*.yaml"))[-1].endswith(
        "rollback.yaml"
    )
    assert [e["event"] for e in meshlab.events()][-1] == "interrupted"
    _assert_on_baseline_after(run_dir, result["rollback"]["applied_at"])
    status = meshlab.run("status", "-f", str(DEMO / "canary-good.yaml"))
    assert "rolled-back" in status.stdout and "routing step rollback" in status.stdout


def test_signal_during_startup_leaves_nothing_running(meshlab: Meshlab) -> None:
    proc = meshlab.start(
        "canary",
        "start",
        "-f",
        str(DEMO / "canary-good.yaml"),
        "--quiet",
        "--runs",
        str(meshlab.tmp / "runs"),
    )
    experiments = meshlab.tmp / "home" / "experiments"
    deadline = time.monotonic() + 30
    while not list(experiments.glob("models.demo-canary-good.*.json")):  # keyed by place too
        assert time.monotonic() < deadline, "no state file within 30 s"
        time.sleep(0.05)
    (state,) = experiments.glob("models.demo-canary-good.*.json")
    time.sleep(0.3)  # model servers and Envoy are starting; no route to the candidate yet
    proc.send_signal(signal.SIGTERM)
    code, _, err = _wait_exit(proc)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "meshlab: error: interrupted" and "Traceback" not in err
    assert json.loads(state.read_text())["phase"] in ("rolled-back", "failed")


def test_sigkill_then_status_and_rollback_tell_the_truth(meshlab: Meshlab) -> None:
    spec = str(DEMO / "canary-good.yaml")
    proc = meshlab.start(
        "canary", "start", "-f", spec, "--quiet", "--runs", str(meshlab.tmp / "runs")
    )
    meshlab.wait_for("step-applied")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    deadline = time.monotonic() + 15  # children die with meshlab (parent-death signal)
    while _processes_mentioning(str(meshlab.tmp)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _processes_mentioning(str(meshlab.tmp)), "the local mesh outlived meshlab"
    status = meshlab.run("status", "-f", spec)
    assert "INTERRUPTED" in status.stdout and "routing step 1" in status.stdout
    rollback = meshlab.run("rollback", "-f", spec)
    assert rollback.returncode == 0 and "nothing routes to the candidate" in rollback.stdout
    status = meshlab.run("status", "-f", spec)
    assert "rolled-back" in status.stdout


def test_rollback_command_stops_a_running_experiment(meshlab: Meshlab) -> None:
    spec = str(DEMO / "canary-good.yaml")
    proc = meshlab.start(
        "canary", "start", "-f", spec, "--quiet", "--runs", str(meshlab.tmp / "runs")
    )
    meshlab.wait_for("step-applied")
    rollback = meshlab.run("rollback", "-f", spec)
    assert rollback.returncode == 0, rollback.stderr
    assert "rolled back by the running meshlab" in rollback.stdout
    code, _, _ = _wait_exit(proc)
    assert code == 130
    again = meshlab.start(
        "canary", "start", "-f", spec, "--quiet", "--runs", str(meshlab.tmp / "runs")
    )
    # a second start is allowed once the first has ended; stop it right away
    meshlab.expect_runs = 2
    meshlab.wait_for("started")
    again.send_signal(signal.SIGTERM)
    assert _wait_exit(again)[0] in (130, 3)


def test_second_start_while_running_is_refused(meshlab: Meshlab) -> None:
    spec = str(DEMO / "canary-good.yaml")
    meshlab.start("canary", "start", "-f", spec, "--quiet", "--runs", str(meshlab.tmp / "runs"))
    meshlab.wait_for("step-applied")
    second = meshlab.run(
        "canary", "start", "-f", spec, "--quiet", "--runs", str(meshlab.tmp / "runs2")
    )
    assert second.returncode == 2 and "already running" in second.stderr
    assert second.stderr.count("\n") == 1


def _demo_variant(tmp: Path, strategy: str) -> Path:
    """examples/<strategy>.yaml with the demo's limits, runnable from a temporary directory."""
    import yaml

    data = yaml.safe_load((REPO / "examples" / f"{strategy}.yaml").read_text())
    spec = data["spec"]
    spec["analysis"]["metrics"] = [
        {"name": "latency-p50", "type": "latency", "quantile": 0.5, "tolerance": "20%"},
        {"name": "errors", "type": "error-rate", "tolerance": "2%"},
    ]
    spec["limits"] = {"minSamples": 200, "maxDuration": "25s", "experimentMaxDuration": "40s"}
    spec["load"].update(rps=120, payloads=str(REPO / "loadtests/data/breast_cancer.v2.jsonl"))
    for arm in ("baseline", "candidate"):
        spec["local"][arm]["command"] = [
            c.replace("{here}", str(REPO / "examples")) for c in spec["local"][arm]["command"]
        ]
    path = tmp / f"{strategy}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("strategy", ["bluegreen", "abtest"])
def test_header_routed_strategies_send_only_matching_traffic_to_the_candidate(
    meshlab: Meshlab, strategy: str
) -> None:
    """Half the generated requests carry the preview / A/B headers; exactly those reach the candidate."""
    spec = _demo_variant(meshlab.tmp, strategy)
    proc = meshlab.start(
        strategy, "start", "-f", str(spec), "--json", "--runs", str(meshlab.tmp / "runs")
    )
    code, out, err = _wait_exit(proc, timeout=120)
    assert code in (0, 1, 3), err[-3000:]
    result = json.loads(out)
    first = result["steps"][0]
    served = first["requests"]["baseline"] + first["requests"]["candidate"]
    assert served >= 100
    share = first["requests"]["candidate"] / served
    # The variant share is 0.5 and routing follows the header: a binomial share within 4.5 standard
    # errors (a false failure about once in 150,000 runs; a run can stop after ~100 requests, where
    # a fixed 0.4-0.6 band failed ~5% of the time), while a router that ignored the header would
    # send all (or none) of them to the candidate.
    assert abs(share - 0.5) < 4.5 * math.sqrt(0.25 / served), first
    applied = sorted(p.name for p in (meshlab.run_dir() / "manifests").glob("*.yaml"))
    assert applied[0] == "01-step-1.yaml"
    assert applied[-1].endswith("promoted.yaml" if code == 0 else "rollback.yaml")
