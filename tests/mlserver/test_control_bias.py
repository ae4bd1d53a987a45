"""The control arm on real servers whose latency depends on their own load (issue 13).

Three real MLServer servers (PyPI ``mlserver`` + ``mlserver-sklearn``, one process each, inference
in the server process: ``MLSERVER_PARALLEL_WORKERS=0``) serve the SAME model (``v1``): the
baseline, the candidate and the control are identical. A single-worker server queues, so its
latency rises with its share of the traffic. A canary step at w% gives the candidate w% and
production the rest:

* WITHOUT a control the candidate (light load) is compared with production (heavy load) and is
  reported clearly faster although it is the same model: the biased estimate the issue is about.
* WITH a control (production ``100-2w``%, control ``w``%, candidate ``w``%) the candidate is
  compared with an identical server under the same share: the latency estimate is near 0 and the
  identical candidate is promoted.

Each run goes through the real ``meshlab canary start`` CLI on the real local mesh (Envoy, Locust)
on loopback, bounded by the spec's limits and a subprocess timeout; the servers start once per
module and are stopped by process group in ``finally``. ``pytest -s`` prints the numbers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import REPO, Server, require_mlserver, running_as, trained

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

PAYLOADS = REPO / "loadtests" / "data" / "breast_cancer.v2.jsonl"
WEIGHT = 25  # the canary step: the candidate's (and the control's) share, percent
RPS = 160


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    """Three MLServer processes serving the same v1 model: baseline, candidate, control."""
    require_mlserver()
    trained()
    logs = tmp_path_factory.mktemp("mlserver-logs")
    copies = {arm: ("v1", "breast-cancer") for arm in ("baseline", "candidate", "control")}
    with running_as(copies, logs) as started:
        yield [started["baseline"], started["candidate"], started["control"]]


def spec(tmp: Path, name: str, servers: list[Server], *, control: bool) -> Path:
    baseline, candidate, second = servers
    local: dict[str, Any] = {"baseline": {"url": baseline.url}, "candidate": {"url": candidate.url}}
    body: dict[str, Any] = {
        "apiVersion": "meshlab.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": "models"},
        "spec": {
            "strategy": "canary",
            "service": {"host": "breast-cancer", "port": 8080},
            "baseline": {"subset": "v1", "labels": {"version": "v1"}},
            "candidate": {"subset": "v2", "labels": {"version": "v2"}},
            "canary": {"steps": [WEIGHT]},
            "analysis": {
                "alpha": 0.05,
                "beta": 0.05,
                "metrics": [
                    {"name": "latency-p50", "type": "latency", "quantile": 0.5, "tolerance": "30%"},
                    {"name": "errors", "type": "error-rate", "tolerance": "2%"},
                ],
            },
            "limits": {"minSamples": 200, "maxDuration": "35s", "experimentMaxDuration": "40s"},
            "load": {
                "protocol": "v2",
                "model": "breast-cancer",
                "payloads": str(PAYLOADS),
                "rps": RPS,
                "users": 16,
            },
            "local": local,
        },
    }
    if control:
        body["spec"]["control"] = {"url": second.url}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def start(file: Path, runs: Path) -> dict[str, Any]:
    """``meshlab canary start --json`` in its own process group, stopped by it whatever happens."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meshlab",
            "canary",
            "start",
            "-f",
            str(file),
            "--json",
            "--runs",
            str(runs),
        ],
        cwd=REPO,
        env={**os.environ, "MESHLAB_HOME": str(runs / "home")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert out.strip().startswith("{"), err[-2000:]
    result: dict[str, Any] = json.loads(out)
    return result


def latency(result: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in result["metrics"] if m["name"] == "latency-p50")


def p50s(run_dir: Path) -> dict[str, float]:
    """Each arm's median latency (ms) over the recorded primary requests."""
    import numpy as np

    from meshlab.samples import ALL_ARMS, read_samples

    s = read_samples(run_dir / "samples.csv")
    out = {}
    for code, arm in enumerate(ALL_ARMS):
        rows = (s.arm == code) & ~s.mirrored & (s.status == 200)
        if rows.any():
            out[arm] = round(float(np.median(s.latency_ms[rows])), 2)
    return out


def report(label: str, result: dict[str, Any]) -> str:
    m = latency(result)
    lo, hi = m["interval"]
    decided = (result["decided_after"] or {}).get("requests")
    return (
        f"\nidentical MLServer v1 servers, canary step {WEIGHT}% at {RPS} rps, {label}: "
        f"{m['comparison']}: p50 estimate {100 * m['estimate']:+.1f}% [{100 * float(lo):+.1f}%, "
        f"{100 * float(hi):+.1f}%], verdict {result['verdict']} after {decided} requests; "
        f"median ms per arm {p50s(Path(result['run_dir']))}"
    )


def test_without_a_control_an_identical_candidate_reads_as_faster(
    servers: list[Server], tmp_path: Path
) -> None:
    """The bias: the same model at a lighter share is reported clearly faster than production."""
    result = start(spec(tmp_path, "bias-no-control", servers, control=False), tmp_path / "runs")
    print(report("no control", result))
    m = latency(result)
    assert m["comparison"] == "candidate vs baseline"
    assert m["estimate"] < -0.15, m  # measured here: -54% (p50 18 vs 38 ms)
    assert float(m["interval"][1]) < 0, m  # shown faster, not just noise
    medians = p50s(Path(result["run_dir"]))
    assert medians["candidate"] < medians["baseline"]


def test_with_a_control_the_identical_candidate_shows_no_effect_and_is_promoted(
    servers: list[Server], tmp_path: Path
) -> None:
    """Candidate vs control (same share, same age): no effect shown, the candidate is promoted."""
    result = start(spec(tmp_path, "bias-control", servers, control=True), tmp_path / "runs")
    print(report("with a control", result))
    m = latency(result)
    assert m["comparison"] == "candidate vs control"
    assert result["verdict"] == "promote", result["reason"]
    lo, hi = float(m["interval"][0]), float(m["interval"][1])
    assert lo < 0 < hi, m  # no effect shown either way (without a control: shown 40-65% faster)
    assert abs(m["estimate"]) < 0.2, m
    step = result["steps"][0]["requests"]
    # production 100-2w, control w, candidate w: the control gets the candidate's share
    assert 0.6 < step["control"] / step["candidate"] < 1.6, step
    assert step["baseline"] > step["candidate"]
    arms = result["evidence"]["arms"]
    assert arms["control"]["statuses"] == {"200": arms["control"]["requests"]}
