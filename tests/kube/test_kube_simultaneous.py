"""Two ``meshlab start`` of one experiment in one cluster: exactly one runs, through the real CLI.

No cluster can run here, so the Kubernetes API is the faithful fake of tests/kube/ (real REST paths
for Leases and routes, resourceVersion conflicts, AlreadyExists on a second create); the load goes
to a loopback model server that labels responses with a random arm. Each start has its own
``MESHLAB_HOME``, as two pods (or two laptops) would: the local state file cannot keep them apart,
only the cluster can.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.kube.cli_support import meshlab, spec, start_args, started, wait_for
from tests.kube.fake_apiserver import FakeKubeAPI

pytestmark = pytest.mark.slow
NS, NAME = "models", "meshlab-fraud-canary"
FAST_LEASE = {"lease": {"duration": "3s", "renewEvery": "500ms"}}


def _route_holders(api: FakeKubeAPI) -> set[str]:
    return {
        a.annotations["meshlab.io/holder"]
        for a in api.audit
        if a.plural == "virtualservices" and a.annotations and "meshlab.io/holder" in a.annotations
    }


def test_two_starts_at_the_same_moment_exactly_one_runs(
    tmp_path: Path, fake_api: FakeKubeAPI, kubeconfig: Path, model_url: str
) -> None:
    path = spec(tmp_path, kubeconfig, **FAST_LEASE)
    # "The same moment": two interpreters never start in step, so every read of the Lease is
    # answered 3 s late (served at once, answered later), as a slow API server would: reads within
    # 3 s of each other both see no Lease, and both starts try to create it.
    fake_api.delays[("GET", "leases")] = (3.0, "late")
    with (
        started(tmp_path, *start_args(path, model_url, tmp_path / "pod-a"), home="pod-a") as first,
        started(tmp_path, *start_args(path, model_url, tmp_path / "pod-b"), home="pod-b") as second,
    ):
        procs = [first, second]
        results = [p.communicate(timeout=180) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], [r[1][-2000:] for r in results]
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    err = results[loser][1]
    lines = [line for line in err.splitlines() if line.startswith("meshlab: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    print(f"the refused start's stderr:\n{err}")
    # One line naming the holder (host/pid/run) and since when.
    assert f"/{procs[winner].pid}/" in lines[0] and " since 20" in lines[0], lines[0]
    print(f"refused start: {lines[0]}")
    holders = _route_holders(fake_api)
    assert len(holders) == 1 and f"/{procs[winner].pid}/" in holders.pop()  # never the loser's
    posts = [r.status for r in fake_api.requests if r.method == "POST" and "/leases" in r.path]
    assert posts.count(201) == 1
    print(f"creates of the Lease answered: {posts} (a 409: both tried, the server chose)")
    assert fake_api.get_object("leases", NS, NAME) is None  # the winner let it go at its end


def test_a_sigkilled_holders_lease_runs_out_and_the_next_start_takes_it(
    tmp_path: Path, fake_api: FakeKubeAPI, kubeconfig: Path, model_url: str
) -> None:
    path = spec(tmp_path, kubeconfig, **FAST_LEASE)
    with started(tmp_path, *start_args(path, model_url, tmp_path / "runs"), home="pod-a") as proc:
        wait_for(lambda: _step_one(fake_api), proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    killed_at = time.time()
    # As if it had run on another node: only the Lease running out can tell it is dead.
    dead = _move_to_another_node(fake_api)
    restarted = meshlab(
        tmp_path, *start_args(path, model_url, tmp_path / "runs-b"), timeout=180, home="pod-b"
    )
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    takeover = next(
        a
        for a in fake_api.audit
        if a.plural == "leases" and a.annotations and "meshlab.io/took-over" in a.annotations
    )
    assert takeover.annotations is not None
    note = takeover.annotations["meshlab.io/took-over"]
    assert note.startswith(f"taken over from {dead} at ") and "no renewal for" in note
    assert takeover.at - killed_at >= 2.0  # not before the 3 s lease could have run out
    assert note in restarted.stderr  # the note is logged, too
    print(f"SIGKILL -> Lease taken over: {takeover.at - killed_at:.2f} s ({note})")
    assert fake_api.get_object("leases", NS, NAME) is None


def _step_one(api: FakeKubeAPI) -> bool:
    obj = api.get_object("virtualservices", NS, NAME)
    annotations = (obj or {}).get("metadata", {}).get("annotations") or {}
    return annotations.get("meshlab.io/step") == "1" and "meshlab.io/holder" in annotations


def _move_to_another_node(api: FakeKubeAPI) -> str:
    """Rename the dead holder's host in its Lease and route annotations; its new identity."""
    lease: dict[str, Any] | None = api.get_object("leases", NS, NAME)
    route = api.get_object("virtualservices", NS, NAME)
    assert lease is not None and route is not None
    holder = str(lease["spec"]["holderIdentity"])
    moved = "node-b/" + holder.split("/", 1)[1]
    lease["spec"]["holderIdentity"] = moved
    route["metadata"]["annotations"]["meshlab.io/holder"] = moved
    api.put_object(lease, manager="meshlab")
    api.put_object(route, manager="meshlab")
    return moved
