"""``meshlab shadow start --target kubernetes`` with the collector, end to end, on loopback.

No cluster can run here: the Kubernetes API is the faithful fake of tests/kube/ and there is no
data plane. ``tests/collector/kserve_player.py`` plays both versions of the model and their KServe
payload loggers: it answers the load generator as the baseline and, for every request, posts each
version's request and response CloudEvents (``cloudevents`` SDK, binary mode, KServe's attributes,
``X-Request-Id`` in ``ce-metadata``) to the collector the run started from
``spec.metrics.collector``. What is under test: the run starts the collector, pairs the shadow's
predictions with the primary's by request id, decides on them (promote a good candidate, abort a
broken one, never pass one whose logger went quiet), writes the collector's counts to the run
directory, ``result.json`` and the report, and leaves no listener behind on any exit (SIGTERM
included). With ``spec.control`` (issue 13) the player also logs a control copy, and the run
mirrors to both copies and judges the candidate's against the control's.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshlab.freeport import free_port
from tests.conftest import REPO
from tests.kube.cli_support import announced_url, started, wait_for
from tests.kube.cli_support import meshlab as _meshlab
from tests.kube.fake_apiserver import FakeKubeAPI

pytestmark = pytest.mark.slow
NAME = "fraud-shadow"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def _player(collector_port: int, candidate: str, control: bool = False) -> Iterator[str]:
    """Both versions and their loggers in one process; stopped by its PID whatever happens."""
    player = REPO / "tests/collector/kserve_player.py"
    collector = f"http://127.0.0.1:{collector_port}"
    command = [sys.executable, str(player), "--collector", collector, "--candidate", candidate]
    command += ["--control"] if control else []
    with announced_url([*command, "--stop-after", "2"]) as url:
        yield url


def _spec(
    tmp_path: Path, kubeconfig: Path, collector_port: int, control: bool = False, **limits: Any
) -> Path:
    data: dict[str, Any] = yaml.safe_load(
        (REPO / "istio_manifests/examples/shadow.experiment.yaml").read_text()
    )
    body = data["spec"]
    body.pop("then")
    body["shadow"] = {"mirrorPercent": 100}
    body["analysis"] = {
        "metrics": [
            {"name": "divergence", "type": "prediction-divergence", "tolerance": "5%"},
            {"name": "errors", "type": "error-rate", "tolerance": "5%"},
        ]
    }
    body["limits"] = {
        "minSamples": 100,
        "maxDuration": "40s",
        "experimentMaxDuration": "45s",
        **limits,
    }
    body["load"] = {
        "protocol": "v2",
        "model": "breast-cancer",
        "rps": 80,
        "payloads": str(REPO / "loadtests/data/breast_cancer.v2.jsonl"),
    }
    body["target"] = {"kind": "kubernetes", "kubeconfig": str(kubeconfig), "requestTimeout": "5s"}
    body["metrics"] = {
        "collector": {
            "listen": "127.0.0.1",
            "port": collector_port,
            "inferenceServices": {"baseline": "fraud-v1", "candidate": "fraud-v2"},
        }
    }
    if control:
        body["control"] = {}
        body["metrics"]["collector"]["inferenceServices"]["control"] = "fraud-v1-control"
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _step(api: FakeKubeAPI) -> str | None:
    vs = api.get_object("virtualservices", "models", f"meshlab-{NAME}")
    return None if vs is None else str(vs["metadata"]["annotations"].get("meshlab.io/step"))


def _run(tmp_path: Path, spec: Path, url: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    run = _meshlab(
        tmp_path,
        "shadow",
        "start",
        "-f",
        str(spec),
        "--url",
        url,
        "--quiet",
        "--runs",
        str(tmp_path / "runs"),
        timeout=150,
    )
    return run, next((tmp_path / "runs").glob("*/"))


def _collector_record(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    counts = json.loads((run_dir / "collector.json").read_text())
    result = json.loads((run_dir / "result.json").read_text())
    return counts, result


@pytest.mark.parametrize("control", [False, True], ids=["no control", "control"])
@pytest.mark.parametrize(
    ("candidate", "verdict", "exit_code"), [("good", "promote", 0), ("broken", "abort", 1)]
)
def test_shadow_in_a_cluster_decides_on_the_collectors_pairs(
    tmp_path: Path,
    fake_api: FakeKubeAPI,
    kubeconfig: Path,
    candidate: str,
    verdict: str,
    exit_code: int,
    control: bool,
) -> None:
    """With a control (issue 13) the candidate's copy is judged against the control's copy."""
    port = free_port()
    spec = _spec(tmp_path, kubeconfig, port, control=control)
    with _player(port, candidate, control=control) as url:
        run, run_dir = _run(tmp_path, spec, url)
        assert not _listening(port), "the run left its collector listening"
    assert run.returncode == exit_code, run.stderr[-3000:]
    counts, result = _collector_record(run_dir)
    assert result["verdict"] == verdict, result["reason"]
    assert result["n_candidate"] >= 1
    reference = "control" if control else "baseline"
    assert {m["comparison"] for m in result["metrics"]} == {f"candidate vs {reference}"}
    divergence = next(m for m in result["metrics"] if m["name"] == "divergence")
    assert divergence["verdict"] == ("pass" if verdict == "promote" else "fail")
    assert divergence["estimate"] == (0.0 if verdict == "promote" else 1.0)
    assert counts["by_arm"]["candidate"] >= result["n_candidate"] > 0
    assert counts["by_arm"].get("control", 0) > 0 if control else "control" not in counts["by_arm"]
    assert counts["rejected"] == 0, counts
    assert result["collector"]["by_arm"] == counts["by_arm"]
    assert "collector's timings" in result["collector"]["timings"]
    report = (run_dir / "report.md").read_text()
    assert "## Collector" in report and "unpaired:" in report
    # the applied step mirrors every request to the candidate (and to the control beside it)
    docs = list(yaml.safe_load_all((run_dir / "manifests" / "01-step-1.yaml").read_text()))
    route = next(d for d in docs if d["kind"] == "VirtualService")["spec"]["http"][-1]
    if control:
        mirrors = {m["destination"]["subset"]: m["percentage"]["value"] for m in route["mirrors"]}
        assert mirrors == {"v2": 100, "control": 100}, mirrors
        dr = fake_api.get_object("destinationrules", "models", f"meshlab-{NAME}")
        assert dr is not None and "control" in {s["name"] for s in dr["spec"]["subsets"]}
    else:
        assert route["mirror"]["subset"] == "v2" and route["mirrorPercentage"]["value"] == 100
    assert _step(fake_api) == ("promoted" if verdict == "promote" else "rollback")


def test_a_logger_that_stops_sending_is_never_a_pass(
    tmp_path: Path, fake_api: FakeKubeAPI, kubeconfig: Path
) -> None:
    port = free_port()
    spec = _spec(tmp_path, kubeconfig, port, maxDuration="15s", experimentMaxDuration="20s")
    with _player(port, "stops") as url:
        run, run_dir = _run(tmp_path, spec, url)
        assert not _listening(port)
    counts, result = _collector_record(run_dir)
    assert result["verdict"] != "promote", result
    assert run.returncode in (1, 3), run.stderr[-3000:]
    assert result["reason"], result
    # the candidate's logger sent for a while, then only the baseline's kept going: every later
    # primary is unpaired and counted as such
    assert 0 < counts["by_arm"]["candidate"] < counts["by_arm"]["baseline"]
    assert counts["unpaired_primary"] > 0
    # the analysis saw the shadow fall silent: far fewer candidate rows than primaries (how many
    # arrive in the 2 s before the logger stops depends on the machine's speed)
    assert 0 < result["n_candidate"] < result["n_baseline"] / 2, result
    vs = fake_api.get_object("virtualservices", "models", f"meshlab-{NAME}")
    assert vs is not None and vs["metadata"]["annotations"]["meshlab.io/step"] == "rollback"


def test_sigterm_stops_the_collector_and_writes_its_counts(
    tmp_path: Path, fake_api: FakeKubeAPI, kubeconfig: Path
) -> None:
    port = free_port()
    spec = _spec(tmp_path, kubeconfig, port)
    with (
        _player(port, "good") as url,
        started(
            tmp_path, "shadow", "start", "-f", str(spec), "--url", url, "--quiet", "--runs",
            str(tmp_path / "runs"),
        ) as proc,
    ):  # fmt: skip
        wait_for(lambda: _listening(port), proc)
        wait_for(lambda: _step(fake_api) == "1", proc)  # mid-run, the shadow being mirrored
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err[-3000:]
        assert not _listening(port), "SIGTERM left the collector listening"
    run_dir = next((tmp_path / "runs").glob("*/"))
    counts, result = _collector_record(run_dir)
    assert result["verdict"] != "promote"
    assert "rejections" in counts
    assert counts["by_arm"]["candidate"] > 0
    assert _step(fake_api) == "rollback"


def test_a_cluster_shadow_test_without_a_collector_is_refused_before_anything_starts(
    tmp_path: Path, fake_api: FakeKubeAPI, kubeconfig: Path
) -> None:
    spec = _spec(tmp_path, kubeconfig, 0)
    data = yaml.safe_load(spec.read_text())
    del data["spec"]["metrics"]
    spec.write_text(yaml.safe_dump(data))
    run = _meshlab(
        tmp_path, "shadow", "start", "-f", str(spec), "--url", "http://127.0.0.1:9", "--quiet",
        "--runs", str(tmp_path / "runs"),
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().startswith("meshlab: error: spec.metrics.collector:"), run.stderr
    assert "Traceback" not in run.stderr
    assert fake_api.get_object("virtualservices", "models", f"meshlab-{NAME}") is None
