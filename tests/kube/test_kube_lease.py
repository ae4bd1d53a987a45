"""The lease on a cluster run's routes, and recovering an interrupted run before a new start.

Against the fake API server of tests/kube/ (no cluster can run here). A "dead" holder is simulated
the way a SIGKILL leaves it: its heartbeat thread stops and nothing releases the lease; the
end-to-end SIGKILL through the real CLI is in test_kube_crash.py.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from meshlab.errors import ConfigError, ConflictError, MeshError
from meshlab.experiment.recovery import (
    Where,
    cluster_rollback,
    cluster_view,
    recover_before_start,
    resolve_target,
    resumable,
)
from meshlab.experiment.state import ExperimentState, cluster_record, state_path
from meshlab.manifests import manifests, plan, routing_plan
from meshlab.mesh.kube_lease import Lease, timestamp
from meshlab.mesh.kubernetes import KubernetesMesh
from tests.kube.conftest import MeshFactory, experiment, user_virtual_service
from tests.kube.fake_apiserver import FakeKubeAPI

NS, NAME = "models", "meshlab-fraud-canary"
LEASE = ("meshlab.io/holder", "meshlab.io/heartbeat", "meshlab.io/lease-seconds")


def _annotations(fake: FakeKubeAPI, name: str = NAME) -> dict[str, str]:
    obj = fake.get_object("virtualservices", NS, name)
    assert obj is not None
    return dict(obj["metadata"].get("annotations") or {})


def _holding(make_mesh: MeshFactory, seconds: float, strategy: str = "canary") -> KubernetesMesh:
    mesh = make_mesh(experiment(strategy))
    mesh.lease_seconds = seconds
    mesh.hold()
    return mesh


def _crash(mesh: KubernetesMesh) -> None:
    """What SIGKILL leaves behind: no more heartbeats, no release (of the routes or the Lease)."""
    assert mesh.heartbeat is not None
    mesh.heartbeat.stop()
    mesh.heartbeat = None
    mesh.holder = None
    mesh.run_lease = None


def _presumed_dead(fake: FakeKubeAPI, name: str = NAME) -> None:
    """The run's Lease as a partition that outlasted it leaves it: run out, so others may take it."""
    lease = fake.get_object("leases", NS, name)
    assert lease is not None
    lease["spec"]["renewTime"] = lease["spec"]["acquireTime"] = timestamp(time.time() - 3600)
    fake.put_object(lease, manager="meshlab")


def _dead_holder(fake: FakeKubeAPI, step_index: int = 1, *, age: float = 3600.0) -> None:
    """Routes of a run that died elsewhere ``age`` seconds ago, at ``plan[step_index]``."""
    exp = experiment("canary")
    step = plan(exp)[step_index]
    dr, vs = manifests(exp, step)
    then = timestamp(time.time() - age)
    stamp = {
        "meshlab.io/experiment": "fraud-canary",
        "meshlab.io/step": step.name,
        "meshlab.io/applied-at": then,
        "meshlab.io/holder": "pod-gone-7f9c/1/0badc0de",
        "meshlab.io/heartbeat": then,
        "meshlab.io/lease-seconds": "30",
    }
    for doc in (dr, vs):
        doc["metadata"]["annotations"] = {**doc["metadata"].get("annotations", {}), **stamp}
        fake.put_object(doc, manager="meshlab")


def test_a_holding_run_stamps_renews_and_releases_its_lease(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    mesh = _holding(make_mesh, 0.6)
    exp = mesh.experiment
    step = plan(exp)[0]
    mesh.apply(routing_plan(exp, step))
    first = _annotations(fake_api)
    assert first["meshlab.io/holder"].startswith(f"{socket.gethostname()}/")
    assert first["meshlab.io/lease-seconds"] == "0.6"
    time.sleep(1.0)
    renewed = _annotations(fake_api)
    assert renewed["meshlab.io/heartbeat"] > first["meshlab.io/heartbeat"]
    assert mesh.heartbeat is not None and mesh.heartbeat.renewals >= 2
    lease = mesh.lease()
    assert lease is not None and lease.alive(time.time())
    assert "running (holder" in cluster_view(exp, _where(mesh)).holder
    mesh.close()
    released = _annotations(fake_api)
    assert not set(LEASE) & set(released)
    assert released["meshlab.io/step"] == "1"  # routing stays as it is
    assert cluster_view(exp, _where(mesh)) == cluster_view(exp, _where(mesh))
    assert cluster_view(exp, _where(mesh)).holder == "none"


def _where(mesh: KubernetesMesh) -> Where:
    """Where the test's backends point: the fixtures' kubeconfig for the fake API server."""
    del mesh
    return Where("kubernetes", _KUBECONFIG[0])


_KUBECONFIG: list[str] = []


@pytest.fixture(autouse=True)
def _remember_kubeconfig(kubeconfig: Path) -> None:
    _KUBECONFIG[:] = [str(kubeconfig)]


def test_a_dead_holder_is_told_apart_from_a_live_one(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    mesh = _holding(make_mesh, 0.9)
    exp = mesh.experiment
    step = plan(exp)[0]
    mesh.apply(routing_plan(exp, step))
    assert cluster_view(exp, _where(mesh)).alive
    _crash(mesh)
    time.sleep(1.2)
    view = cluster_view(exp, _where(mesh))
    assert not view.alive and view.step == "1"
    assert view.holder.startswith("DEAD since ")
    elsewhere = Lease("node-b/12/abcd", time.time() - 5, 30.0, time.time() - 60)
    assert elsewhere.alive(time.time())  # another host: only the lease can tell
    here_gone = Lease(f"{socket.gethostname()}/999999999/abcd", time.time(), 30.0, time.time())
    assert not here_gone.alive(time.time()) and "process is gone" in here_gone.describe(time.time())


def test_the_heartbeat_never_overwrites_another_holder(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    first = _holding(make_mesh, 0.6)
    exp = first.experiment
    step = plan(exp)[0]
    first.apply(routing_plan(exp, step))
    _presumed_dead(fake_api)
    second = _holding(make_mesh, 30)
    second.apply(routing_plan(exp, step))  # took over (e.g. the first was presumed dead)
    time.sleep(0.8)
    assert first.heartbeat is not None and first.heartbeat.lost
    assert first.run_lease is not None and first.run_lease.lost == second.holder
    assert _annotations(fake_api)["meshlab.io/holder"] == second.holder
    first.close()  # must not release the second's lease
    assert _annotations(fake_api)["meshlab.io/holder"] == second.holder


def test_an_adopted_virtual_service_is_restored_without_the_lease(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    original = fake_api.put_object(user_virtual_service())
    exp = experiment("abtest", adoptVirtualService="fraud-routes")
    mesh = make_mesh(exp)
    mesh.lease_seconds = 0.6
    mesh.hold()
    step = plan(exp)[0]
    mesh.apply(routing_plan(exp, step))
    time.sleep(0.5)
    assert _annotations(fake_api, "fraud-routes")["meshlab.io/holder"] == mesh.holder
    _crash(mesh)
    mesh.rollback()
    restored = fake_api.get_object("virtualservices", NS, "fraud-routes")
    assert restored is not None
    assert restored["metadata"]["annotations"] == original["metadata"]["annotations"]
    assert restored["spec"] == original["spec"]


def test_start_rolls_back_a_dead_run_first(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI, kubeconfig: Path
) -> None:
    _dead_holder(fake_api)
    exp = experiment("canary")
    before = len(fake_api.requests)
    got = recover_before_start(exp, kubeconfig=str(kubeconfig))
    assert got is exp
    annotations = _annotations(fake_api)
    assert annotations["meshlab.io/step"] == "rollback"
    assert not set(LEASE) & set(annotations)  # the rollback was not written by a holding run
    writes = [r for r in fake_api.requests[before:] if r.method != "GET"]
    assert [(r.method, r.path.rsplit("/", 2)[-2]) for r in writes] == [
        ("PATCH", "destinationrules"),  # rollback routes: the DestinationRule first,
        ("PATCH", "virtualservices"),  # then the VirtualService,
        ("PATCH", "virtualservices"),  # then the dead run's lease removed (a merge patch)
    ]
    assert recover_before_start(exp, kubeconfig=str(kubeconfig)) is exp  # nothing left to do


def test_resume_carries_on_from_the_step_in_force(fake_api: FakeKubeAPI, kubeconfig: Path) -> None:
    _dead_holder(fake_api, step_index=2)
    exp = experiment("canary")
    writes = len([r for r in fake_api.requests if r.method != "GET"])
    got = recover_before_start(exp, kubeconfig=str(kubeconfig), resume=True)
    assert got.spec.canary is not None and exp.spec.canary is not None
    assert got.spec.canary.steps == exp.spec.canary.steps[2:]
    assert len([r for r in fake_api.requests if r.method != "GET"]) == writes  # no dip, no write
    assert _annotations(fake_api)["meshlab.io/step"] == "3"
    # the resumed run keeps the steps' numbers: its step 3 is the plan's step 3 (same weight), so
    # its report names the right weights and a second crash resumes at step 3 again, not step 1
    original = {s.name: s.candidate_weight for s in plan(exp)}
    resumed = [(s.name, s.candidate_weight) for s in plan(got)]
    assert resumed[0][0] == "3" and all(original[n] == w for n, w in resumed), resumed
    again = resumable(got, "3")
    assert again is not None and [s.name for s in plan(again)] == [n for n, _ in resumed]
    assert resumable(got, "4") is None  # the 100% soak needs the dead run's promote verdict
    assert resumable(got, "1") is None  # not a step of the resumed run


def test_resume_at_a_full_weight_step_rolls_back_first(
    fake_api: FakeKubeAPI, kubeconfig: Path
) -> None:
    exp = experiment("canary")
    assert exp.spec.canary is not None and exp.spec.canary.steps[-1] == 100
    assert resumable(exp, str(len(exp.spec.canary.steps))) is None
    assert resumable(exp, "1") is exp
    bluegreen = experiment("bluegreen")
    assert resumable(bluegreen, "2") is None
    _dead_holder(fake_api, step_index=len(exp.spec.canary.steps) - 1)
    recover_before_start(exp, kubeconfig=str(kubeconfig), resume=True)
    assert _annotations(fake_api)["meshlab.io/step"] == "rollback"


def test_a_live_holder_is_waited_for_then_refused(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI, kubeconfig: Path
) -> None:
    live = _holding(make_mesh, 0.9)
    exp = live.experiment
    step = plan(exp)[0]
    assert live.holder is not None
    live.holder = live.holder.replace(socket.gethostname(), "node-b", 1)  # as if on another node
    assert live.heartbeat is not None
    live.heartbeat.holder = live.holder
    live.apply(routing_plan(exp, step))
    began = time.monotonic()
    # the run's Lease refuses it first (its heartbeat renews it), before any run directory
    with pytest.raises(ConfigError, match="already being run by another meshlab: Lease"):
        recover_before_start(exp, kubeconfig=str(kubeconfig))
    assert time.monotonic() - began < 3
    assert _annotations(fake_api)["meshlab.io/step"] == "1"  # a live run is never rolled back


def test_a_holder_that_stops_renewing_is_rolled_back_once_its_lease_runs_out(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI, kubeconfig: Path
) -> None:
    other = _holding(make_mesh, 1.2)
    exp = other.experiment
    step = plan(exp)[1]
    other.apply(routing_plan(exp, step))
    assert other.holder is not None
    annotations = _annotations(fake_api)
    annotations["meshlab.io/holder"] = other.holder.replace(socket.gethostname(), "node-b", 1)
    _crash(other)
    vs = fake_api.get_object("virtualservices", NS, NAME)
    assert vs is not None
    vs["metadata"]["annotations"] = annotations
    fake_api.put_object(vs, manager="meshlab")
    began = time.monotonic()
    recover_before_start(exp, kubeconfig=str(kubeconfig))
    waited = time.monotonic() - began
    assert 0.3 < waited < 4, waited
    assert _annotations(fake_api)["meshlab.io/step"] == "rollback"


def test_a_dry_run_reads_but_never_rolls_back(fake_api: FakeKubeAPI, kubeconfig: Path) -> None:
    _dead_holder(fake_api)
    recover_before_start(experiment("canary"), kubeconfig=str(kubeconfig), dry_run=True)
    assert _annotations(fake_api)["meshlab.io/step"] == "2"


def test_cluster_rollback_confirms_what_it_claims(fake_api: FakeKubeAPI, kubeconfig: Path) -> None:
    exp = experiment("canary")
    where = Where("kubernetes", str(kubeconfig))
    assert "nothing routes to the candidate" in cluster_rollback(exp, where)
    _dead_holder(fake_api)
    line = cluster_rollback(exp, where)
    assert "was canary 25% (step 2)" in line and "step rollback, baseline only" in line
    assert _annotations(fake_api)["meshlab.io/step"] == "rollback"


def test_commands_act_where_the_run_was(tmp_path: Path) -> None:
    local = experiment("canary").model_copy(deep=True)
    spec = local.spec.model_copy(
        update={"target": local.spec.target.model_copy(update={"kind": "local"})}
    )
    local = local.model_copy(update={"spec": spec})
    kube = experiment("canary")
    record = cluster_record(kube, "rel/kubeconfig", "ctx")
    assert record == {"kubeconfig": str(Path("rel/kubeconfig").resolve()), "context": "ctx"}
    assert cluster_record(local, "x", "y") == {}
    now = time.time()
    state = ExperimentState(
        "fraud-canary", NS, "canary", "kubernetes", "running", "1", "/r", 1, now, now, mesh=record
    )
    assert resolve_target(local, state) == Where("kubernetes", record["kubeconfig"], "ctx")
    assert resolve_target(local, state, target="local").kind == "local"
    assert resolve_target(local, state, kubeconfig="/k", context="c") == Where(
        "kubernetes", "/k", "c"
    )
    assert resolve_target(local, None) == Where("local", None, None)
    with pytest.raises(ConfigError, match="--target"):
        resolve_target(local, None, target="nomad")


def test_state_files_are_keyed_by_where_the_spec_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESHLAB_HOME", str(tmp_path / "home"))
    exp = experiment("canary")
    one, two = tmp_path / "checkout-a" / "exp.yaml", tmp_path / "checkout-b" / "exp.yaml"
    assert state_path(exp, one) != state_path(exp, two)
    assert state_path(exp, one) == state_path(exp, one.parent / "other-name.yaml")
    assert state_path(exp, one).parent == tmp_path / "home" / "experiments"
    assert state_path(exp, one).name.startswith("models.fraud-canary.")


def test_a_run_that_lost_its_routes_stops_and_never_overrides_the_new_holder(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    first = _holding(make_mesh, 30)
    exp = first.experiment
    one, two = plan(exp)[:2]
    first.apply(routing_plan(exp, one))
    _presumed_dead(fake_api)
    second = _holding(make_mesh, 30)  # took over, e.g. after a partition outlasted the lease
    second.apply(routing_plan(exp, one))
    with pytest.raises(ConflictError, match="another meshlab holds them now"):
        first.apply(routing_plan(exp, two))
    assert first.run_lease is not None
    first.run_lease.renew()  # its next heartbeat: the run's Lease is lost too
    with pytest.raises(ConflictError, match=rf"held by another meshlab now \({second.holder}\)"):
        first.apply(routing_plan(exp, two))
    with pytest.raises(MeshError, match=r"rollback NOT applied.*another meshlab holds them"):
        first.rollback()
    assert _annotations(fake_api)["meshlab.io/step"] == "1"
    assert _annotations(fake_api)["meshlab.io/holder"] == second.holder


def test_a_manual_rollback_stops_the_run_holding_the_routes(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI, kubeconfig: Path
) -> None:
    run = _holding(make_mesh, 30)
    exp = run.experiment
    one, two = plan(exp)[:2]
    run.apply(routing_plan(exp, one))
    cluster_rollback(exp, Where("kubernetes", str(kubeconfig)))
    assert "meshlab.io/holder" not in _annotations(fake_api)
    with pytest.raises(ConflictError, match="its lease was removed"):
        run.apply(routing_plan(exp, two))
    run.rollback()  # its own rollback still goes ahead: the routes are the baseline's anyway
    assert _annotations(fake_api)["meshlab.io/step"] == "rollback"


def test_lease_renewal_rides_out_server_errors(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    mesh = _holding(make_mesh, 0.6)
    exp = mesh.experiment
    step = plan(exp)[0]
    mesh.apply(routing_plan(exp, step))
    fake_api.fail("PATCH", "virtualservices", times=2, status=500)
    fake_api.fail("GET", "virtualservices", times=1, status=503)
    time.sleep(1.6)
    assert mesh.heartbeat is not None and mesh.heartbeat.renewals >= 1
    assert not mesh.heartbeat.lost
    assert not any(f.times for f in fake_api.failures)
