"""The control arm on the real local mesh (issue 13): started, routed, mirrored, tapped, watched.

Real Envoy and real sample model servers on 127.0.0.1 (``examples/models/serve.py``). With
``spec.control: {}`` the mesh starts a second baseline from ``local.baseline.command`` on its own
port with its own sidecar; a canary step sends production ``100-2w``%, the control ``w``% and the
candidate ``w``% (each answer names its arm in ``x-meshlab-arm``); a shadow step mirrors every
request to the candidate AND the control, whose copies the tap records with ``arm="control"``.
A control that dies is an infrastructure fault (role ``control``, exit 4), never the candidate's;
the rollback routes everything to the baseline. Every process is stopped by ``mesh.close()``
(by process group) in ``finally``; requests are bounded in number.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from meshlab.experiment.faults import judge_faults
from meshlab.manifests import plan, step_plan
from meshlab.mesh.health import ProbeSettings
from meshlab.mesh.local import LocalMesh
from meshlab.spec import Experiment

from .conftest import EXAMPLES, Client, example, running

pytestmark = pytest.mark.envoy
PROBE = ProbeSettings(interval=0.1, timeout=0.5, unresponsive_after=1.0)


def with_control(name: str) -> Experiment:
    return example(name, control={})


@pytest.fixture(scope="module")
def shadow_mesh() -> Iterator[tuple[LocalMesh, Experiment]]:
    exp = with_control("shadow.yaml")
    mesh = LocalMesh(exp, here=EXAMPLES)
    try:
        mesh.start()
        yield mesh, exp
    finally:
        mesh.close()


def test_the_control_is_a_second_baseline_with_its_own_port_and_sidecar(
    shadow_mesh: tuple[LocalMesh, Experiment],
) -> None:
    mesh, _ = shadow_mesh
    assert set(mesh.model_urls) == {"baseline", "candidate", "control"}
    assert mesh.model_urls["control"] != mesh.model_urls["baseline"]
    assert {"control model server", "control-sidecar"} <= set(mesh.pids)
    assert set(mesh.admin_urls) == {"outbound", "baseline", "candidate", "control"}
    server = mesh.servers["control"]
    assert server.child is not None and "--version" in server.child.argv
    assert server.child.argv[server.child.argv.index("--version") + 1] == "baseline"


def test_shadow_mirrors_to_candidate_and_control_and_taps_both(
    shadow_mesh: tuple[LocalMesh, Experiment],
) -> None:
    mesh, exp = shadow_mesh
    shadow = plan(exp)[0]
    assert shadow.kind == "shadow"
    mesh.apply(step_plan(exp, shadow))
    mesh.mirrored_samples()  # drop anything earlier
    results = Client(mesh.url).send(60, "shadow", threads=3)
    assert {r.arm for r in results} == {"baseline"}  # users only ever get production
    assert all(r.status == 200 for r in results)
    copies: list = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        copies += mesh.mirrored_samples()
        by_arm = Counter(s.arm for s in copies)
        if by_arm["candidate"] >= 60 and by_arm["control"] >= 60:
            break
        time.sleep(0.1)
    by_arm = Counter(s.arm for s in copies)
    assert by_arm == {"candidate": 60, "control": 60}, by_arm
    assert all(s.mirrored and s.status == 200 and s.prediction for s in copies)
    ids = {r.request_id for r in results}
    assert {s.request_id for s in copies if s.arm == "control"} == ids


def test_a_canary_step_gives_the_control_the_candidates_share(
    shadow_mesh: tuple[LocalMesh, Experiment],
) -> None:
    mesh, exp = shadow_mesh
    step = next(s for s in plan(exp) if s.kind == "canary" and s.candidate_weight == 25)
    mesh.apply(step_plan(exp, step))
    results = Client(mesh.url).send(800, "canary", threads=4)
    arms = Counter(r.arm for r in results)
    assert all(r.status == 200 for r in results)
    # production 50%, control 25%, candidate 25% (binomial, n=800: 200 +- 3 sd is 164..236)
    assert 160 <= arms["candidate"] <= 240, arms
    assert 160 <= arms["control"] <= 240, arms
    assert 340 <= arms["baseline"] <= 460, arms
    mesh.rollback()
    after = Client(mesh.url).send(50, "rolled-back", threads=2)
    assert {r.arm for r in after} == {"baseline"}


def test_a_dead_control_is_an_infrastructure_fault_not_a_candidate_abort() -> None:
    exp = with_control("canary.yaml")
    mesh = LocalMesh(exp, here=EXAMPLES, probe=PROBE)
    try:
        mesh.start()
        mesh.apply(step_plan(exp, plan(exp)[0]))
        pid = mesh.pids["control model server"]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not mesh.faults() and time.monotonic() < deadline:
            time.sleep(0.05)
        faults = mesh.faults()
        assert [f.role for f in faults] == ["control"], faults
        assert not running(pid)
        verdict = judge_faults(faults, [])
        assert verdict is not None and verdict.role == "control"
        assert "infrastructure failure" in verdict.reason
        mesh.rollback()  # needs only the outbound Envoy: everything back on the baseline
        after = Client(mesh.url).send(40, "after", threads=2)
        assert {r.arm for r in after} == {"baseline"}
        assert all(r.status == 200 for r in after)
    finally:
        mesh.close()
