"""``meshlab load``: the command through typer's CliRunner, and stopping on SIGTERM / Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from meshlab.cli.load import register
from meshlab.errors import ConfigError, SpecError
from meshlab.samples import read_samples

from .conftest import FEATURES_JSONL, ROOT, Endpoint
from .test_run import alive

APP_SCRIPT = """
import sys, typer
from meshlab.cli.load import register
app = typer.Typer()
app.callback()(lambda: None)
register(app)
app(sys.argv[1:])
"""


def make_app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return app


def spec_file(tmp_path: Path, **load: object) -> Path:
    data = yaml.safe_load((ROOT / "examples" / "fraud-v2.yaml").read_text())
    data["spec"]["load"] = {"payloads": FEATURES_JSONL.name, "timeout": "1s", "users": 4, **load}
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data))
    (tmp_path / FEATURES_JSONL.name).write_text(FEATURES_JSONL.read_text())  # beside the spec
    return path


@pytest.mark.slow
def test_load_command_writes_a_valid_samples_file(arm_server: Endpoint, tmp_path: Path) -> None:
    out = tmp_path / "run" / "samples.csv"
    result = CliRunner().invoke(
        make_app(),
        [
            "load",
            "-f",
            str(spec_file(tmp_path)),
            "--url",
            arm_server.url,
            "--rps",
            "40",
            "--duration",
            "2s",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert 30 <= len(read_samples(out)) <= 100  # 40/s for 2 s, less Locust's start-up
    assert f"to {out} at " in result.output


@pytest.mark.parametrize(
    ("args", "error", "words"),
    [
        (["--duration", "soon"], ConfigError, "--duration: 'soon' is not a duration"),
        (["--rps", "-3"], ConfigError, "--rps"),
        (["--workers", "-1"], ConfigError, "--workers"),
    ],
)
def test_bad_flags_are_config_errors(
    tmp_path: Path, args: list[str], error: type[Exception], words: str
) -> None:
    result = CliRunner().invoke(
        make_app(),
        [
            "load",
            "-f",
            str(spec_file(tmp_path)),
            "--url",
            "http://127.0.0.1:9",
            *args,
        ],
    )
    assert isinstance(result.exception, error), result.output
    assert words in str(result.exception)


def test_bad_spec_names_the_field(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        make_app(),
        [
            "load",
            "-f",
            str(spec_file(tmp_path, extractor="x..y")),
            "--url",
            "http://127.0.0.1:9",
        ],
    )
    assert isinstance(result.exception, SpecError)
    assert result.exception.path == "spec.load.extractor"


def test_missing_payloads_is_a_config_error(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "examples" / "fraud-v2.yaml").read_text())
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(make_app(), ["load", "-f", str(path), "--url", "http://x:1"])
    assert isinstance(result.exception, ConfigError)
    assert "spec.load.payloads" in str(result.exception)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(") ", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_load_and_keeps_samples(
    arm_server: Endpoint, tmp_path: Path, signum: int
) -> None:
    out = tmp_path / "samples.csv"
    spool = tmp_path / ".samples-locust" / "spool.csv"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            APP_SCRIPT,
            "load",
            "-f",
            str(spec_file(tmp_path)),
            "--url",
            arm_server.url,
            "--rps",
            "30",
            "--duration",
            "60s",
            "--out",
            str(out),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        process_group=0,
    )
    kids: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
            spool.exists() and any(not ln.startswith("#") for ln in spool.read_text().splitlines())
        ):
            time.sleep(0.2)
        kids = children(proc.pid)
        assert len(kids) == 2, "expected a Locust master and one worker"
        proc.send_signal(signum)
        started = time.monotonic()
        _, err = proc.communicate(timeout=20)
        assert time.monotonic() - started < 15
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for kid in kids:
            if alive(kid):
                os.kill(kid, signal.SIGKILL)
    assert proc.returncode == 130, err.decode()[-400:]
    assert len(read_samples(out)) > 0
    assert not any(alive(kid) for kid in kids)


@pytest.mark.slow
def test_too_few_users_for_the_rate_is_reported(tmp_path: Path) -> None:
    from .conftest import stack

    proc, port = stack.start_arm_server("baseline", delay_ms=100)  # 1 user: at most ~10 req/s
    try:
        result = CliRunner().invoke(
            make_app(),
            [
                "load",
                "-f",
                str(spec_file(tmp_path)),
                "--url",
                f"http://127.0.0.1:{port}",
                "--rps",
                "40",
                "--users",
                "1",
                "--duration",
                "2s",
                "--out",
                str(tmp_path / "s.csv"),
            ],
        )
    finally:
        proc.stop()
    assert result.exit_code == 0, result.output
    assert "raise --users" in result.output
