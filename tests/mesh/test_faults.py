"""Faults on the real local mesh (real Envoy, real sample models): seen by role, and rolled back.

Each row starts its own mesh, routes step 1 of the canary under a little background traffic, then
injects one fault by PID (SIGKILL, or SIGSTOP for "stops answering"), waits for ``faults()`` to
name it, and rolls back. The rollback is confirmed by reading the routes back from the outbound
Envoy's admin, then by sending requests. Stopped processes are continued by PID in ``finally``.
The measured times (fault -> detected, fault -> rollback applied) are printed per row (``-s``).
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshlab.errors import MeshError
from meshlab.manifests import plan
from meshlab.mesh import Fault, MeshBackend
from meshlab.mesh.envoy_config import cluster_name
from meshlab.mesh.envoy_process import admin_json
from meshlab.mesh.health import ProbeSettings
from meshlab.mesh.local import LocalMesh
from tests.mesh.conftest import EXAMPLES, Client, apply, example, running
from tests.mesh.test_model_faults import model_server

pytestmark = pytest.mark.envoy

PROBE = ProbeSettings()  # the defaults a run uses: every 0.5 s, 1 s timeout, silent for 3 s
DEATH_BOUND_S = 3.0  # a death is seen within a probe interval; generous for a shared CPU
SILENCE_BOUND_S = PROBE.unresponsive_after + PROBE.interval + PROBE.timeout + 3.0
TIMINGS: list[tuple[str, float, float, float]] = []

ROWS = [
    # (child to hit, signal, expected role, expected describe() pattern)
    (
        "candidate model server",
        signal.SIGKILL,
        "candidate",
        r"candidate model server \(pid \d+\) killed by signal 9",
    ),
    (
        "candidate-sidecar",
        signal.SIGKILL,
        "candidate",
        r"candidate sidecar Envoy \(pid \d+\) killed by signal 9",
    ),
    (
        "candidate model server",
        signal.SIGSTOP,
        "candidate",
        r"candidate model server \(pid \d+\) stopped answering for \d+\.\ds "
        r"\(the process is stopped",
    ),
    (
        "baseline model server",
        signal.SIGKILL,
        "baseline",
        r"baseline model server \(pid \d+\) killed by signal 9",
    ),
    ("outbound", signal.SIGKILL, "router", r"outbound Envoy \(pid \d+\) killed by signal 9"),
    ("outbound", signal.SIGSTOP, "router", r"outbound Envoy \(pid \d+\) stopped answering"),
]


@pytest.fixture(scope="module", autouse=True)
def timing_table() -> Iterator[None]:
    yield
    print("\nfault row                               detected(s)  since-fault(s)  rolled back(s)")
    for row, detected, since, rolled in TIMINGS:
        print(f"{row:<40}{detected:>10.2f}{since:>15.2f}{rolled:>16.2f}")


def _routed_clusters(mesh: LocalMesh) -> set[str]:
    """Every cluster the outbound Envoy's served routes name (read back from its admin)."""
    assert mesh.outbound is not None
    dump = admin_json(mesh.outbound.admin_url, "/config_dump?resource=dynamic_route_configs")
    found: set[str] = set()
    for config in dump.get("configs", []):
        for vhost in config["route_config"].get("virtual_hosts", []):
            for route in vhost.get("routes", []):
                action = route.get("route", {})
                if "cluster" in action:
                    found.add(action["cluster"])
                for weighted in action.get("weighted_clusters", {}).get("clusters", []):
                    found.add(weighted["name"])
                for mirror in action.get("request_mirror_policies", []):
                    found.add(mirror["cluster"])
    return found


def _wait_for_fault(mesh: LocalMesh, bound: float) -> tuple[list[Fault], float]:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        faults = mesh.faults()
        if faults:
            return faults, time.time()
        time.sleep(0.02)
    raise AssertionError(f"no fault reported within {bound:.1f}s")


@pytest.mark.parametrize(("target", "sig", "role", "pattern"), ROWS)
def test_a_fault_is_named_by_role_and_the_rollback_still_applies(
    target: str, sig: signal.Signals, role: str, pattern: str
) -> None:
    exp = example("canary.yaml")
    spec = exp.spec
    baseline = cluster_name(spec.service.host, spec.service.port, spec.baseline.subset)
    candidate = cluster_name(spec.service.host, spec.service.port, spec.candidate.subset)
    mesh = LocalMesh(exp, here=EXAMPLES, probe=PROBE)
    stopped_pid: int | None = None
    stop = threading.Event()
    sender: threading.Thread | None = None
    try:
        mesh.start()
        assert isinstance(mesh, MeshBackend)
        apply(mesh, exp, plan(exp)[0])
        assert _routed_clusters(mesh) == {baseline, candidate}
        listen_url = mesh.url
        time.sleep(PROBE.interval * 3)
        assert mesh.faults() == []  # a healthy mesh under probing reports nothing
        client = Client(listen_url)
        sender = threading.Thread(
            target=client.send, args=(100_000, "bg"), kwargs={"threads": 2, "stop": stop}
        )
        sender.start()
        time.sleep(0.3)

        pid = mesh.pids[target]
        fault_at = time.time()
        os.kill(pid, sig)
        if sig == signal.SIGSTOP:
            stopped_pid = pid
        bound = SILENCE_BOUND_S if sig == signal.SIGSTOP else DEATH_BOUND_S
        faults, seen_at = _wait_for_fault(mesh, bound)
        assert len(faults) == 1, [f.describe() for f in faults]
        fault = faults[0]
        assert fault.role == role
        assert re.fullmatch(pattern + r".*", fault.describe()), fault.describe()
        assert fault_at - 0.5 <= fault.since <= seen_at

        mesh.rollback()  # needs only the outbound Envoy, restarted if it is the one that failed
        rolled_at = time.time()
        stop.set()
        sender.join(timeout=30)
        TIMINGS.append(
            (
                f"{target} {sig.name}",
                seen_at - fault_at,
                fault.since - fault_at,
                rolled_at - fault_at,
            )
        )

        state = mesh.status()
        assert state is not None and state.step == "rollback"
        assert _routed_clusters(mesh) == {baseline}
        assert mesh.url == listen_url  # a restarted outbound Envoy keeps its ports
        assert mesh.router_restarts == (1 if role == "router" else 0)
        after = Client(listen_url).send(40, "after", threads=2)
        assert len(after) == 40
        assert not any(r.arm == "candidate" for r in after)
        if role != "baseline":
            assert {(r.status, r.arm) for r in after} == {(200, "baseline")}
        # The fault stays reported (with its first sighting), and a forward step is refused.
        assert mesh.faults()[0] == fault
        with pytest.raises(MeshError, match=r"has a fault|lost a process"):
            apply(mesh, exp, plan(exp)[0])
    finally:
        stop.set()
        if sender is not None:
            sender.join(timeout=30)
        if stopped_pid is not None and running(stopped_pid):
            os.kill(stopped_pid, signal.SIGCONT)
        mesh.close()
    assert not any(running(p) for p in mesh.pids.values())


def test_a_server_meshlab_did_not_start_is_probed_by_its_url(tmp_path: Path) -> None:
    """A ``url:`` candidate has no process to poll: only the probe can see it stop answering."""
    with model_server(tmp_path) as (port, server):
        exp = example(
            "canary.yaml",
            local={
                "baseline": example("canary.yaml").spec.local.baseline.model_dump(  # type: ignore[union-attr]
                    by_alias=True, exclude_none=True
                ),
                "candidate": {"url": f"http://127.0.0.1:{port}"},
            },
        )
        mesh = LocalMesh(exp, here=EXAMPLES, probe=PROBE)
        try:
            mesh.start()
            apply(mesh, exp, plan(exp)[0])
            time.sleep(PROBE.interval * 3)
            assert mesh.faults() == []  # a 404 on / is an answer: the server is alive
            fault_at = time.time()
            os.kill(server.pid, signal.SIGSTOP)
            try:
                faults, seen_at = _wait_for_fault(mesh, SILENCE_BOUND_S)
                mesh.rollback()
            finally:
                os.kill(server.pid, signal.SIGCONT)
            assert [(f.role, f.component) for f in faults] == [
                ("candidate", f"candidate model server at http://127.0.0.1:{port}")
            ]
            assert faults[0].detail.startswith("stopped answering for ")
            TIMINGS.append(
                (
                    "candidate url: SIGSTOP",
                    seen_at - fault_at,
                    faults[0].since - fault_at,
                    time.time() - fault_at,
                )
            )
            state = mesh.status()
            assert state is not None and state.step == "rollback"
        finally:
            mesh.close()
