"""Signal storms against the real ``meshlab`` CLI: schedule, send, and check what meshlab left.

Shared by the CI storm test (``test_signal_storm.py``, a few seeds) and the offline reproduction
``scripts/double_signal_repro.py`` (50 runs of ``kill -INT PID; kill -INT PID``). Each run starts
``meshlab canary start`` on the real local mesh (real Envoy, Locust and model servers on loopback)
in its own process group, waits for a phase, fires its signals, and checks the promise of issue 11:
the process ends by itself (bounded), exit 130, no traceback, and if it got far enough to create a
run: the rollback manifest is the last applied, the last event is ``interrupted``, ``result.json``
says 130, the state is final with the rollback routes in force (``meshlab status``: ROLLED BACK),
no request reached the candidate after the rollback, and the report exists unless the storm held
three signals within a few seconds (then it may be skipped).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from meshlab.samples import read_samples

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "examples" / "demo" / "canary-good.yaml"
STATE_GLOB = "models.demo-canary-good.*.json"  # state files are keyed by the spec's place too


def _state_file(home: Path) -> Path:
    """The run's state file, or a path that does not exist (yet)."""
    found = sorted((home / "experiments").glob(STATE_GLOB))
    return found[0] if found else home / "experiments" / "absent.json"


PHASES = ("import", "start-up", "step", "analysis", "rollback")


@dataclass(frozen=True)
class Shot:
    """One signal: which, to the process or its whole group, after how long a pause."""

    signum: int
    group: bool
    pause: float


@dataclass
class StormResult:
    phase: str
    seed: int
    shots: list[Shot]
    code: int | None
    seconds: float
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems


def schedule(phase: str, seed: int) -> list[Shot]:
    """2 to 6 signals, SIGINT/SIGTERM mixed, some back to back, some to the process group."""
    rng = random.Random(f"{phase}-{seed}")
    shots = []
    for i in range(rng.randint(2, 6)):
        back_to_back = rng.random() < 0.4
        pause = 0.0 if (i == 0 or back_to_back) else rng.uniform(0.01, 0.6)
        if phase == "rollback" and i > 0:
            pause = rng.uniform(0.0, 0.25)  # the rest lands while the first is being handled
        shots.append(Shot(rng.choice([signal.SIGINT, signal.SIGTERM]), rng.random() < 0.3, pause))
    return shots


def double_int() -> list[Shot]:
    """``kill -INT PID; kill -INT PID``."""
    return [Shot(signal.SIGINT, False, 0.0), Shot(signal.SIGINT, False, 0.0)]


def _caught(pid: int, signum: int) -> bool:
    """Whether the process has a handler for ``signum`` (meshlab's guard is installed)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def _events(home: Path, runs: Path) -> list[dict[str, object]]:
    dirs = sorted(runs.glob("*/"))
    path = dirs[-1] / "events.jsonl" if dirs else None
    if path is None or not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def _wait_for_phase(
    proc: subprocess.Popen[str], phase: str, home: Path, runs: Path, rng: random.Random
) -> bool:
    """Block until ``phase`` is reached, plus a random instant into it; False if never."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        state = _state_file(home)
        if phase == "import":
            if _caught(proc.pid, signal.SIGTERM):  # the entry point runs, imports follow
                time.sleep(rng.uniform(0.0, 0.25))
                return True
        elif phase == "start-up":
            if state.exists():
                time.sleep(rng.uniform(0.0, 2.5))
                return True
        else:
            events = [e.get("event") for e in _events(home, runs)]
            if "step-applied" in events:
                if phase == "analysis":
                    history = sorted(runs.glob("*/"))[-1] / "history.jsonl"
                    while time.monotonic() < deadline and proc.poll() is None:
                        if history.exists() and history.read_text().count("\n") >= 4:
                            break
                        time.sleep(0.01)
                    time.sleep(rng.uniform(0.0, 0.2))
                else:
                    time.sleep(rng.uniform(0.2, 1.5))
                return True
        time.sleep(0.002)
    return False


def run_storm(
    tmp: Path,
    phase: str,
    seed: int,
    shots: list[Shot] | None = None,
    timeout: float = 90,
    tree: Path = REPO,
) -> StormResult:
    """Start meshlab, fire the storm in ``phase``, wait for the end, check what was left.

    ``tree`` is the meshlab source tree to run (another revision, to measure "before").
    """
    home, runs = tmp / "home", tmp / "runs"
    env = {**os.environ, "MESHLAB_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    if tree != REPO:
        env["PYTHONPATH"] = str(tree)
    spec = tree / SPEC.relative_to(REPO)
    shots = shots if shots is not None else schedule(phase, seed)
    rng = random.Random(seed)
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshlab", "canary", "start", "-f", str(spec), "-q", "--runs", runs],
        cwd=tree,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    result = StormResult(phase, seed, shots, None, 0.0)
    try:
        if not _wait_for_phase(proc, phase, home, runs, rng):
            result.problems.append(f"phase {phase} never reached (exit {proc.poll()})")
        for shot in shots:
            time.sleep(shot.pause)
            with contextlib.suppress(ProcessLookupError):
                if shot.group:
                    os.killpg(proc.pid, shot.signum)
                else:
                    os.kill(proc.pid, shot.signum)
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            result.problems.append(f"HANG: still running {timeout:g}s after the storm")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
    result.code = proc.returncode
    result.seconds = time.monotonic() - began
    result.problems += check(home, runs, proc.returncode, err, shots, env, tree)
    return result


def check(
    home: Path,
    runs: Path,
    code: int,
    err: str,
    shots: list[Shot],
    env: dict[str, str],
    tree: Path = REPO,
) -> list[str]:
    """Everything issue 11 promises after an interrupt; an empty list when it all holds."""
    problems = []
    if code != 130:
        problems.append(f"exit {code}, not 130: {err[-600:]!r}")
    if "Traceback" in err:
        problems.append(f"traceback on stderr: {err[-1500:]!r}")
    state_file = _state_file(home)
    dirs = sorted(runs.glob("*/"))
    if not state_file.exists():
        if dirs:
            problems.append("a run directory exists but no state file")
        return problems  # interrupted before the run existed: nothing started, nothing to record
    state = json.loads(state_file.read_text())
    if (state["phase"], state["step"]) != ("rolled-back", "rollback"):
        problems.append(f"state {state['phase']}/{state['step']}: {state.get('detail')}")
    status = subprocess.run(
        [sys.executable, "-m", "meshlab", "status", "-f", str(tree / SPEC.relative_to(REPO))],
        cwd=tree,
        env=env,
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if "ROLLED BACK" not in status.stdout:
        problems.append(f"status does not say ROLLED BACK: {status.stdout!r}")
    if not dirs:
        return [*problems, "no run directory"]
    run_dir = dirs[-1]
    applied = sorted(p.name for p in (run_dir / "manifests").glob("*.yaml"))
    if not applied or not applied[-1].endswith("rollback.yaml"):
        problems.append(f"last manifest applied is not the rollback: {applied}")
    events = [e.get("event") for e in _events(home, runs)]
    if not events or events[-1] != "interrupted":
        problems.append(f"last event is not 'interrupted': {events[-3:]}")
    result_file = run_dir / "result.json"
    if not result_file.exists():
        return [*problems, "no result.json"]
    result = json.loads(result_file.read_text())
    if result["exit_code"] != 130 or result["final_step"] != "rollback":
        problems.append(f"result.json: exit {result['exit_code']}, step {result['final_step']}")
    if not (run_dir / "report.html").exists() and len(shots) < 3:
        problems.append("no report, and fewer than three signals were sent")
    rollback = result.get("rollback") or {}
    if "applied_at" in rollback and (run_dir / "samples.csv").exists():
        samples = read_samples(run_dir / "samples.csv")
        late = (samples.timestamp > rollback["applied_at"] + 0.5) & (samples.arm == 1)
        if int((late & ~samples.mirrored).sum()):
            problems.append("requests reached the candidate after the rollback")
    return problems
