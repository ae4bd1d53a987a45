"""The local mesh's shadow through the collector (``metrics.source: collector``), end to end.

Real Envoy, real Locust, the demo's real model servers on 127.0.0.1: the tap captures the shadow's
answers behind Envoy, a forwarder posts them to the run's collector per the documented contract,
and the collector joins them with the load generator's primaries by request id, as in a cluster
whose model servers are not KServe. Both demo candidates reach the tap path's verdicts (the good
model promoted, broken preprocessing aborted on divergence), the collector's counts are in the
run directory, ``result.json`` and the report, and no listener outlives the run. Each meshlab
process runs in its own process group, killed in ``finally`` whatever happens.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

pytestmark = [pytest.mark.envoy, pytest.mark.slow]
DEMO = REPO / "examples" / "demo"


def _spec(tmp: Path, candidate: str) -> Path:
    data: dict[str, Any] = yaml.safe_load((DEMO / "shadow-bad.yaml").read_text())
    body = data["spec"]
    data["metadata"]["name"] = f"collector-{candidate}"
    serve = str(REPO / "examples/models/serve.py")
    body["load"]["payloads"] = str(REPO / "loadtests/data/breast_cancer.v2.jsonl")
    for arm in ("baseline", "candidate"):
        command = body["local"][arm]["command"]
        body["local"][arm]["command"] = [serve if "serve.py" in c else c for c in command]
    body["local"]["candidate"]["command"][-3] = candidate
    if candidate != "bad":
        body["local"]["candidate"].pop("env", None)
    body["metrics"] = {"source": "collector"}
    path = tmp / f"{candidate}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("candidate", "verdict"), [("good", "promote"), ("bad", "abort")])
def test_local_shadow_through_the_collector_reaches_the_tap_verdicts(
    tmp_path: Path, candidate: str, verdict: str
) -> None:
    spec = _spec(tmp_path, candidate)
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshlab", "shadow", "start", "-f", str(spec), "--json",
         "--runs", str(tmp_path / "runs")],
        cwd=REPO, env={**os.environ, "MESHLAB_HOME": str(tmp_path / "home")}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
    assert proc.returncode == (0 if verdict == "promote" else 1), err[-3000:]
    result = json.loads(out)
    assert result["verdict"] == verdict
    collector = result["collector"]
    assert collector["by_arm"]["candidate"] >= result["n_candidate"] > 0
    assert collector["rejected"] == 0, collector
    run_dir = Path(result["run_dir"])
    assert json.loads((run_dir / "collector.json").read_text())["records"] == collector["records"]
    assert "## Collector" in (run_dir / "report.md").read_text()
    divergence = next(m for m in result["metrics"] if m["name"] == "divergence")
    assert divergence["verdict"] == ("pass" if verdict == "promote" else "fail")
