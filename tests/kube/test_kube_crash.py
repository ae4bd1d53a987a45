"""Crash-only cluster runs through the real CLI: SIGKILL mid-step, then what the Job's restart does.

No cluster can run here, so the Kubernetes API is the faithful fake of tests/kube/ (real REST
paths, server-side apply, CRD validation, resourceVersion conflicts, injected 5xx and hangs) and
the load goes to a loopback model server that labels responses with a random arm. A SIGKILL is
what the kernel does to an OOM-killed container: no handler runs, nothing is rolled back. The
restarted Job runs the very same command; we run it on the same host, which is how the new run
can tell at once that the holder's process is gone (across pods it waits for the lease to run out,
tested in test_kube_lease.py).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube.cli_support import meshlab, spec, start_args, started, wait_for
from tests.kube.fake_apiserver import Audit, FakeKubeAPI

pytestmark = pytest.mark.slow
NS, NAME = "models", "meshlab-fraud-canary"


def _vs(api: FakeKubeAPI) -> dict[str, Any]:
    vs = api.get_object("virtualservices", NS, NAME)
    assert vs is not None
    return vs


def _annotations(api: FakeKubeAPI) -> dict[str, str]:
    return dict(_vs(api)["metadata"].get("annotations") or {})


def _in_step_one_with_heartbeat(api: FakeKubeAPI) -> bool:
    obj = api.get_object("virtualservices", NS, NAME)
    annotations = (obj or {}).get("metadata", {}).get("annotations") or {}
    return annotations.get("meshlab.io/step") == "1" and "meshlab.io/holder" in annotations


def _baseline_only(vs: dict[str, Any]) -> bool:
    routes = vs["spec"]["http"]
    return all(d["destination"]["subset"] == "v1" for r in routes for d in r["route"]) and all(
        "mirror" not in r for r in routes
    )


def _vs_writes(api: FakeKubeAPI, since: int) -> list[Audit]:
    return [a for a in api.audit[since:] if a.plural == "virtualservices"]


def _kill_in_step_one(tmp_path: Path, api: FakeKubeAPI, args: tuple[str, ...]) -> str:
    """Start meshlab, SIGKILL it (and its Locust) mid step 1; the dead holder's id."""
    with started(tmp_path, *args) as proc:
        wait_for(lambda: _in_step_one_with_heartbeat(api), proc)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
    annotations = _annotations(api)
    assert annotations["meshlab.io/step"] == "1"  # nothing rolled back: no handler ran
    return annotations["meshlab.io/holder"]


def test_a_sigkilled_run_is_rolled_back_by_its_restarted_job_then_runs_again(
    tmp_path: Path, fake_api: FakeKubeAPI, kubeconfig: Path, model_url: str, token: str
) -> None:
    path = spec(tmp_path, kubeconfig)
    args = start_args(path, model_url, tmp_path / "runs")
    dead = _kill_in_step_one(tmp_path, fake_api, args)

    status = meshlab(tmp_path, "status", "-f", str(path))
    assert status.returncode == 0, status.stderr
    assert "INTERRUPTED while running" in status.stdout
    assert "routing read back from the cluster: step 1" in status.stdout
    assert "meshlab holding the routes: DEAD since " in status.stdout
    assert dead in status.stdout and "its process is gone" in status.stdout

    mark = len(fake_api.audit)
    began = time.time()
    # The Job's new pod: same command, an empty state directory (its emptyDir is new).
    restarted = meshlab(tmp_path, *args, timeout=150, home="new-pod")
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert "interrupted at canary 50% (step 1)" in restarted.stderr
    assert "rolling it back before starting" in restarted.stderr
    assert "interrupted run rolled back (read back from the cluster)" in restarted.stderr
    assert token not in restarted.stdout + restarted.stderr
    writes = _vs_writes(fake_api, mark)
    assert writes[0].annotations is not None
    rollback = writes[0].annotations
    assert rollback["meshlab.io/step"] == "rollback"  # before anything else
    print(f"restart -> rollback applied: {writes[0].at - began:.2f} s (incl. interpreter start)")
    steps = [a.annotations["meshlab.io/step"] for a in writes if a.annotations]
    assert "1" in steps and steps[-1] == "promoted"
    first_step = steps.index("1")
    assert set(steps[:first_step]) == {"rollback"}  # rollback (and the dead lease's removal) first
    assert all(
        a.annotations.get("meshlab.io/holder") != dead for a in writes if a.annotations
    )  # the dead run's claim went with the rollback
    assert not {"meshlab.io/holder", "meshlab.io/heartbeat"} & set(_annotations(fake_api))
    after = meshlab(tmp_path, "status", "-f", str(path), home="new-pod")
    assert "routing read back from the cluster: step promoted" in after.stdout
    assert "meshlab holding the routes: none" in after.stdout


def test_resume_carries_on_without_a_dip_to_the_baseline(
    tmp_path: Path, fake_api: FakeKubeAPI, kubeconfig: Path, model_url: str
) -> None:
    path = spec(tmp_path, kubeconfig)
    args = start_args(path, model_url, tmp_path / "runs")
    _kill_in_step_one(tmp_path, fake_api, args)
    mark = len(fake_api.audit)
    resumed = meshlab(tmp_path, *args, "--resume", timeout=150)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming there" in resumed.stderr
    steps = [a.annotations["meshlab.io/step"] for a in _vs_writes(fake_api, mark) if a.annotations]
    assert "rollback" not in steps
    assert steps[0] == "1" and steps[-1] == "promoted"


def test_rollback_acts_on_the_cluster_the_run_used_even_if_the_spec_says_local(
    tmp_path: Path, fake_api: FakeKubeAPI, kubeconfig: Path, model_url: str
) -> None:
    path = spec(tmp_path, kubeconfig)
    data = yaml.safe_load(path.read_text())
    data["spec"]["target"] = {"kind": "local", "requestTimeout": "5s"}
    path.write_text(yaml.safe_dump(data))
    args = start_args(
        path,
        model_url,
        tmp_path / "runs",
        "--target",
        "kubernetes",
        "--kubeconfig",
        str(kubeconfig),
    )
    _kill_in_step_one(tmp_path, fake_api, args)
    rolled = meshlab(tmp_path, "rollback", "-f", str(path))
    assert rolled.returncode == 0, rolled.stderr
    assert "routes rolled back to the baseline in the cluster" in rolled.stdout
    assert "was canary 50% (step 1)" in rolled.stdout
    assert "step rollback, baseline only" in rolled.stdout
    vs = _vs(fake_api)
    assert vs["metadata"]["annotations"]["meshlab.io/step"] == "rollback" and _baseline_only(vs)
    assert "meshlab.io/holder" not in vs["metadata"]["annotations"]  # the dead claim is gone
    status = meshlab(tmp_path, "status", "-f", str(path))
    assert "finished: rolled-back" in status.stdout
    assert "routing read back from the cluster: step rollback" in status.stdout
    local = meshlab(tmp_path, "status", "-f", str(path), "--target", "local")
    assert "routing read back" not in local.stdout


def test_server_errors_and_a_timeout_during_the_rollback_are_ridden_out(
    tmp_path: Path, fake_api: FakeKubeAPI, kubeconfig: Path, model_url: str
) -> None:
    path = spec(tmp_path, kubeconfig, requestTimeout="2s")
    args = start_args(path, model_url, tmp_path / "runs")
    with started(tmp_path, *args) as proc:
        wait_for(lambda: _in_step_one_with_heartbeat(fake_api), proc)
        time.sleep(0.5)
        fake_api.fail("PATCH", "destinationrules", times=2, status=500)
        fake_api.fail("PATCH", "virtualservices", times=1, hang=3.0)
        fake_api.fail("PATCH", "virtualservices", times=2, status=503)
        mark, began = len(fake_api.audit), time.time()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 130, err[-3000:]
    rollback = next(a for a in _vs_writes(fake_api, mark) if a.annotations)
    assert (
        rollback.annotations is not None and rollback.annotations["meshlab.io/step"] == "rollback"
    )
    print(f"SIGTERM -> rollback applied through 2x500, a hang, 2x503: {rollback.at - began:.2f} s")
    assert _baseline_only(_vs(fake_api))
    assert "ROLLBACK FAILED" not in out + err
    assert not any(f.times for f in fake_api.failures)


def test_a_step_the_server_keeps_failing_ends_the_run_rolled_back(
    tmp_path: Path, fake_api: FakeKubeAPI, kubeconfig: Path, model_url: str
) -> None:
    path = spec(tmp_path, kubeconfig)
    args = start_args(path, model_url, tmp_path / "runs")
    with started(tmp_path, *args) as proc:
        wait_for(lambda: _in_step_one_with_heartbeat(fake_api), proc)
        # Enough 500s to outlast a step's 10 s of retries, not a rollback's 45 s.
        fault = fake_api.fail("PATCH", "virtualservices", times=14, status=500)
        began = time.time()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 4, err[-3000:]
    assert fault.times == 0
    vs = _vs(fake_api)
    assert vs["metadata"]["annotations"]["meshlab.io/step"] == "rollback" and _baseline_only(vs)
    applied = max(a.at for a in fake_api.audit if a.plural == "virtualservices")
    first_500 = min(r.at for r in fake_api.requests if r.status == 500)
    assert first_500 >= began
    print(f"first 500 (step 2's apply) -> rollback applied: {applied - first_500:.2f} s")
    assert "500" in out + err and "rolled back" in out + err
    assert "ROLLBACK FAILED" not in out + err
