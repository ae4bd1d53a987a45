"""Every way a local mesh can end leaves no process behind: Ctrl-C, SIGTERM, a dying child, an
exception, and meshlab itself being SIGKILLed. Each test runs meshlab in a subprocess (its own
process group, killed in ``finally``) and checks every child PID it reported is gone."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshlab.samples import read_samples
from tests.conftest import REPO
from tests.mesh.conftest import EXAMPLES, Client, running

pytestmark = pytest.mark.envoy

# ``meshlab mesh up`` through a typer app with the mesh commands registered (as the CLI does).
CLI = """
import sys, typer
from meshlab.cli import main, app
from meshlab.cli import mesh
if not any(g.name == "mesh" for g in app.registered_groups):
    mesh.register(app)
sys.exit(main(sys.argv[1:]))
"""
# The library used directly, with an exception after start.
LIBRARY = """
import sys
from meshlab.mesh.local import LocalMesh
from meshlab.spec import load_experiment
exp = load_experiment(sys.argv[1])
with LocalMesh(exp, here=__import__("pathlib").Path(sys.argv[1]).parent).start() as mesh:
    for name, pid in mesh.pids.items():
        print(f"started {name} (pid {pid})", file=sys.stderr, flush=True)
    print(f"mesh URL: {mesh.url}", flush=True)
    {action}
"""
STARTED = re.compile(r"started (.+) \(pid (\d+)\)")


@dataclass
class Run:
    process: subprocess.Popen[str]
    pids: dict[str, int]
    stderr: list[str]
    url: str


@contextmanager
def meshlab(code: str, *args: str) -> Iterator[Run]:
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,
    )
    pids: dict[str, int] = {}
    lines: list[str] = []
    try:
        assert process.stderr is not None and process.stdout is not None
        for line in process.stderr:  # the pids come before the URL line on stdout
            lines.append(line)
            if match := STARTED.search(line):
                pids[match[1]] = int(match[2])
            if len(pids) == 5:
                break
        assert len(pids) == 5, "".join(lines)
        url_line = process.stdout.readline()
        assert url_line.startswith("mesh URL: http://127.0.0.1:"), url_line
        yield Run(process, pids, lines, url_line.split()[-1])
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        for pid in pids.values():  # never leave a process behind, even when the test failed
            if running(pid):
                os.killpg(pid, signal.SIGKILL)


def _all_gone(pids: dict[str, int], within: float = 10.0) -> list[str]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = [name for name, pid in pids.items() if running(pid)]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


def _rest(run: Run) -> str:
    assert run.process.stderr is not None
    return "".join(run.stderr) + run.process.stderr.read()


# A shell starting a command in the background hands it SIGINT already ignored.
IGNORING_SIGINT = "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n" + CLI


@pytest.mark.parametrize(
    ("code", "sig"),
    [(CLI, signal.SIGINT), (IGNORING_SIGINT, signal.SIGINT), (CLI, signal.SIGTERM)],
    ids=["ctrl-c", "ctrl-c-started-in-background", "sigterm"],
)
def test_a_signal_stops_everything_and_exits_cleanly(code: str, sig: signal.Signals) -> None:
    with meshlab(code, "mesh", "up", "-f", str(EXAMPLES / "canary.yaml"), "--step", "2") as run:
        os.kill(run.process.pid, sig)
        assert run.process.wait(timeout=20) == 0
        assert _all_gone(run.pids) == []
        assert "every process meshlab started has ended" in _rest(run)


def test_a_child_dying_stops_the_rest_with_an_error() -> None:
    with meshlab(CLI, "mesh", "up", "-f", str(EXAMPLES / "canary.yaml")) as run:
        os.kill(run.pids["candidate model server"], signal.SIGKILL)
        assert run.process.wait(timeout=20) == 4
        assert _all_gone(run.pids) == []
        assert "candidate model server" in _rest(run)


def test_an_exception_in_the_controller_stops_everything() -> None:
    code = LIBRARY.replace("{action}", "raise RuntimeError('controller bug')")
    with meshlab(code, str(EXAMPLES / "canary.yaml")) as run:
        assert run.process.wait(timeout=20) == 1
        assert _all_gone(run.pids) == []
        assert "controller bug" in _rest(run)


def test_meshlab_killed_outright_takes_its_children_with_it() -> None:
    code = LIBRARY.replace("{action}", "import time; time.sleep(60)")
    with meshlab(code, str(EXAMPLES / "canary.yaml")) as run:
        os.kill(run.process.pid, signal.SIGKILL)  # no handler, no atexit: only PDEATHSIG helps
        run.process.wait(timeout=10)
        assert _all_gone(run.pids) == []


def test_mesh_up_writes_mirrored_samples_paired_by_request_id(tmp_path: Path) -> None:
    out = tmp_path / "mirrored.csv"
    spec = str(EXAMPLES / "shadow.yaml")
    with meshlab(CLI, "mesh", "up", "-f", spec, "--mirrored-samples", str(out)) as run:
        url = run.url
        results = Client(url).send(30, "cli", threads=2)
        assert {r.arm for r in results} == {"baseline"}
        os.kill(run.process.pid, signal.SIGTERM)
        assert run.process.wait(timeout=20) == 0
    samples = read_samples(out)
    assert sorted(samples.request_id.tolist()) == sorted(r.request_id for r in results)
    assert samples.mirrored.all() and (samples.arm == 1).all() and (samples.status == 200).all()
