"""Fixtures for the load tests: loopback model servers and a real Envoy, stopped by PID group."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "loadtests" / "support"))

import stack  # noqa: E402

__all__ = ["ROOT", "Endpoint", "stack"]

FEATURES_JSONL = ROOT / "loadtests" / "data" / "meshlab-features.jsonl"
FEATURES_CSV = ROOT / "loadtests" / "data" / "meshlab-features.csv"
TEMPLATE = ROOT / "loadtests" / "data" / "meshlab-template.json"


@dataclass(frozen=True)
class Endpoint:
    url: str
    served: list[Path]  # arm servers' logs: one "request_id,arm" line per request they answered

    def served_arms(self) -> dict[str, str]:
        arms: dict[str, str] = {}
        for log in self.served:
            for line in log.read_text(encoding="utf-8").splitlines():
                rid, arm = line.split(",")
                assert rid not in arms, f"request id {rid} served twice"
                arms[rid] = arm
        return arms


@pytest.fixture(scope="module")
def envoy_split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoint]:
    """Real Envoy splitting 70/30 between a baseline and a candidate server; Envoy sets the arm."""
    work = tmp_path_factory.mktemp("envoy")
    procs: list[stack.Proc] = []
    try:
        logs = {arm: work / f"{arm}.log" for arm in ("baseline", "candidate")}
        ports = {}
        for arm, log in logs.items():
            proc, ports[arm] = stack.start_arm_server(arm, log=log, header=False)
            procs.append(proc)
        config = stack.envoy_config(stack.free_port(), stack.free_port(), backends=ports)
        envoy, port = stack.start_envoy(config, work)
        procs.append(envoy)
        yield Endpoint(f"http://127.0.0.1:{port}", list(logs.values()))
    finally:
        for proc in procs:
            proc.stop()


@pytest.fixture
def arm_server(tmp_path: Path) -> Iterator[Endpoint]:
    """A model server that labels each response with a seeded random arm (30% candidate)."""
    log = tmp_path / "served.log"
    proc, port = stack.start_arm_server("random:0.3", log=log)
    try:
        yield Endpoint(f"http://127.0.0.1:{port}", [log])
    finally:
        proc.stop()
