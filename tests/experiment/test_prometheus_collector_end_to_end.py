"""Prometheus and the collector in one shadow run, end to end, on the local mesh.

Real Envoy, real Locust, the demo's real model servers, a real Prometheus scraping the outbound
Envoy, and the run's collector fed by the tap's captures per the documented contract: error rate
(and latency) come from Prometheus, prediction divergence from the load generator's primaries
paired with the collector's shadow rows, all through the run's one ordered merge. Both demo
candidates reach the tap path's verdicts, and the report says which source fed which metric.

The run picks the split comparison itself (``analysis_core`` in ``meshlab.experiment.run``).
Each meshlab process runs in its own process group, killed in ``finally`` whatever happens.
"""

from __future__ import annotations

import csv
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
from tests.experiment.test_collector_local import _spec
from tests.experiment.test_prometheus_end_to_end import prometheus as prometheus  # fixture
from tests.metrics.conftest import free_port

pytestmark = [pytest.mark.envoy, pytest.mark.slow]


def _both(tmp: Path, candidate: str, url: str, admin: int) -> Path:
    path = _spec(tmp, candidate)
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    body = data["spec"]
    data["metadata"]["name"] = f"prom-collector-{candidate}"
    body["metrics"] = {
        "source": "prometheus",
        "prometheus": {"url": url, "interval": "1s", "gracePeriod": "15s"},
        "collector": {"port": free_port()},
    }
    body["local"]["adminPort"] = admin
    body["limits"]["maxDuration"] = "60s"
    body["limits"]["experimentMaxDuration"] = "70s"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("candidate", "verdict"), [("good", "promote"), ("bad", "abort")])
def test_prometheus_feeds_errors_and_the_collector_divergence_in_one_merge(
    tmp_path: Path, prometheus: tuple[str, int], candidate: str, verdict: str
) -> None:
    url, admin = prometheus
    spec = _both(tmp_path, candidate, url, admin)
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshlab", "shadow", "start", "-f", str(spec), "--json",
         "--runs", str(tmp_path / "runs")],
        cwd=REPO, env={**os.environ, "MESHLAB_HOME": str(tmp_path / "home")}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=10)
    assert proc.returncode == (0 if verdict == "promote" else 1), err[-3000:]
    result = json.loads(out)
    assert result["verdict"] == verdict, (result["reason"], result["metrics"])
    errors = next(m for m in result["metrics"] if m["name"] == "errors")
    divergence = next(m for m in result["metrics"] if m["name"] == "divergence")
    assert divergence["verdict"] == ("pass" if verdict == "promote" else "fail")
    # Errors were counted from Prometheus's series, divergence on the collector's pairs: the
    # samples file holds both kinds of rows, and no raw request was counted twice.
    run_dir = Path(result["run_dir"])
    rows = list(csv.reader((run_dir / "samples.csv").read_text().splitlines()[1:]))
    prom = [r for r in rows if r[2].startswith("prom-")]
    prom_baseline = sum(1 for r in prom if r[1] == "baseline")
    raw_shadow = sum(1 for r in rows if not r[2].startswith("prom-") and r[6] == "1")
    # raw primaries would about double it; a bad candidate can be aborted on divergence before
    # Prometheus's first window arrives (then no error row was counted at all)
    assert errors["n_baseline"] <= prom_baseline
    if verdict == "promote":
        assert errors["n_baseline"] > 0
    assert 0 < divergence["n_candidate"] <= raw_shadow
    collector = result["collector"]
    assert collector["by_arm"]["candidate"] > 0 and collector["rejected"] == 0, collector
    assert "errors: both arms from Prometheus" in collector["timings"]
    assert "divergence: the primary's predictions from the load generator" in collector["timings"]
    report = (run_dir / "report.md").read_text()
    assert "metrics fed by source: errors: both arms from Prometheus" in report
    late = result["evidence"]["late_rows"]
    assert set(late["by_source"]) == {"load", "prometheus", "collector"}
    assert "late rows: " in report
