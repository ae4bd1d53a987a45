"""The run's coordination.k8s.io Lease: one meshlab per experiment, taken before anything applies.

Against the fake API server of tests/kube/ (no cluster can run here), which serves Leases on their
real REST paths with resourceVersion conflicts and the API server's Lease validation. The same
race through the real CLI (two ``meshlab start`` processes, a SIGKILLed holder) is in
test_kube_simultaneous.py.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from meshlab.errors import SpecError
from meshlab.manifests import plan, routing_plan
from meshlab.mesh.kube_lease import timestamp
from meshlab.mesh.kube_runlease import TOOK_OVER_ANNOTATION, LeaseHeldError
from meshlab.mesh.kubernetes import KubernetesMesh
from meshlab.spec import load_experiment
from tests.kube.cli_support import meshlab, spec, start_args
from tests.kube.conftest import MeshFactory, experiment
from tests.kube.fake_apiserver import FakeKubeAPI, Hook

NS, NAME = "models", "meshlab-fraud-canary"


def _lease(fake: FakeKubeAPI) -> dict[str, object]:
    lease = fake.get_object("leases", NS, NAME)
    assert lease is not None
    spec = lease["spec"]
    assert isinstance(spec, dict)
    return spec


def _lease_requests(fake: FakeKubeAPI, method: str) -> list[int]:
    return [r.status for r in fake.requests if r.method == method and "/leases" in r.path]


def _foreign_lease(fake: FakeKubeAPI, holder: str, renewed_ago: float, seconds: int) -> None:
    """A Lease another meshlab took, last renewed ``renewed_ago`` seconds ago."""
    then = timestamp(time.time() - renewed_ago)
    fake.put_object(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": NAME, "namespace": NS},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": seconds,
                "acquireTime": then,
                "renewTime": then,
                "leaseTransitions": 2,
            },
        },
        manager="meshlab",
    )


def test_two_runs_taking_the_lease_at_the_same_moment_exactly_one_wins(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    meshes = [make_mesh(experiment("canary")) for _ in range(2)]
    # Both reads are served before either answer is sent: both see no Lease, both POST.
    fake_api.delays[("GET", "leases")] = (0.4, "late")
    barrier = threading.Barrier(2)
    errors: dict[int, LeaseHeldError] = {}

    def take(i: int) -> None:
        barrier.wait()
        try:
            meshes[i].hold()
        except LeaseHeldError as exc:
            errors[i] = exc

    threads = [threading.Thread(target=take, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(_lease_requests(fake_api, "POST")) == [201, 409]  # the server picked one
    assert len(errors) == 1
    (loser,) = errors
    winner = meshes[1 - loser]
    spec = _lease(fake_api)
    assert spec["holderIdentity"] == winner.holder
    message = str(errors[loser])
    assert "\n" not in message and errors[loser].exit_code == 2
    assert f"holder {winner.holder} since {spec['acquireTime']}" in message
    assert "it created the Lease first" in message
    del fake_api.delays[("GET", "leases")]
    # Nothing was applied by the loser, and its close() leaves the winner's Lease alone.
    meshes[loser].close()
    assert _lease(fake_api)["holderIdentity"] == winner.holder
    assert fake_api.get_object("virtualservices", NS, NAME) is None


def test_the_lease_is_renewed_by_the_heartbeat_and_deleted_at_the_end(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    mesh = make_mesh(experiment("canary"))
    mesh.lease_seconds = 1.2  # a Lease counts whole seconds: 2, renewed every 0.4 s
    mesh.hold()
    first = _lease(fake_api)
    assert first["leaseDurationSeconds"] == 2 and first["holderIdentity"] == mesh.holder
    assert first["leaseTransitions"] == 0 and first["acquireTime"] == first["renewTime"]
    time.sleep(1.0)
    renewed = _lease(fake_api)
    assert str(renewed["renewTime"]) > str(first["renewTime"])
    assert renewed["acquireTime"] == first["acquireTime"]
    assert 200 in _lease_requests(fake_api, "PUT")
    exp = mesh.experiment
    mesh.apply(routing_plan(exp, plan(exp)[0]))
    mesh.close()
    assert fake_api.get_object("leases", NS, NAME) is None
    assert _lease_requests(fake_api, "DELETE") == [200]


def test_a_live_holder_is_waited_for_and_refused_when_it_renews(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    live = make_mesh(experiment("canary"))
    live.lease_seconds = 3.0  # renewed every second
    live.hold()
    late = make_mesh(experiment("canary"))
    began = time.monotonic()
    with pytest.raises(LeaseHeldError, match="it renewed it meanwhile, so it is alive") as caught:
        late.hold()
    assert time.monotonic() - began < 2.5  # refused at the holder's next renewal, not at expiry
    assert f"holder {live.holder} since " in str(caught.value)
    assert _lease(fake_api)["holderIdentity"] == live.holder


def test_a_start_refused_by_a_live_holder_leaves_nothing_behind(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI, tmp_path: Path, kubeconfig: Path, model_url: str
) -> None:
    """Through the CLI: the refused start exits 2 with one line, before it makes a run directory
    or a state file (it used to leave a run marked "failed" for a run it never started)."""
    live = make_mesh(experiment("canary"))
    live.lease_seconds = 3.0  # renewed every second by its heartbeat
    live.hold()
    try:
        runs = tmp_path / "runs"
        refused = meshlab(
            tmp_path, *start_args(spec(tmp_path, kubeconfig), model_url, runs), timeout=60
        )
    finally:
        live.close()
    assert refused.returncode == 2, refused.stderr[-3000:]
    lines = [line for line in refused.stderr.splitlines() if line.startswith("meshlab: error:")]
    assert len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert "it renewed it meanwhile, so it is alive" in lines[0], lines[0]
    assert not runs.exists() or not any(runs.iterdir()), list(runs.iterdir())
    home = tmp_path / "home"
    states = [p for p in home.rglob("*") if p.is_file()] if home.exists() else []
    assert not states, states
    assert _lease_requests(fake_api, "POST") == [201]  # the holder's create only
    assert _lease_requests(fake_api, "PUT").count(409) == 0  # the refused start wrote nothing


def test_cleanup_deletes_a_dead_runs_lease_and_leaves_a_live_ones(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    mesh = make_mesh(experiment("canary"))
    _foreign_lease(fake_api, "node-b/4242/dead", renewed_ago=60, seconds=3)
    mesh.cleanup()
    assert fake_api.get_object("leases", NS, NAME) is None
    _foreign_lease(fake_api, "node-b/4243/live", renewed_ago=0, seconds=30)
    mesh.cleanup()
    assert _lease(fake_api)["holderIdentity"] == "node-b/4243/live"
    assert _lease_requests(fake_api, "DELETE") == [200]  # the dead one's only


def test_a_dead_holders_expired_lease_is_taken_over_with_a_note(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    _foreign_lease(fake_api, "node-b/7/0badc0de", renewed_ago=120, seconds=30)
    mesh = make_mesh(experiment("canary"))
    mesh.hold()
    spec = _lease(fake_api)
    assert spec["holderIdentity"] == mesh.holder and spec["leaseTransitions"] == 3
    lease = fake_api.get_object("leases", NS, NAME)
    assert lease is not None
    note = lease["metadata"]["annotations"][TOOK_OVER_ANNOTATION]
    assert note.startswith("taken over from node-b/7/0badc0de at ")
    assert "no renewal for 120 s" in note
    assert mesh.run_lease is not None and mesh.run_lease.took_over == note


def test_a_holder_that_stops_renewing_is_taken_over_once_its_lease_runs_out(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    _foreign_lease(fake_api, "node-b/7/0badc0de", renewed_ago=0.5, seconds=2)
    mesh = make_mesh(experiment("canary"))
    began = time.monotonic()
    mesh.hold()
    waited = time.monotonic() - began
    assert 1.0 < waited < 3.5, waited  # waited for the lease to run out, no longer
    assert _lease(fake_api)["holderIdentity"] == mesh.holder


def test_a_holder_whose_process_is_gone_is_taken_over_at_once(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    gone = f"{socket.gethostname()}/999999999/0badc0de"  # this host, a pid that cannot exist
    _foreign_lease(fake_api, gone, renewed_ago=0, seconds=30)
    mesh = make_mesh(experiment("canary"))
    began = time.monotonic()
    mesh.hold()
    assert time.monotonic() - began < 1.0
    assert mesh.run_lease is not None and mesh.run_lease.took_over is not None
    assert "its process is gone" in mesh.run_lease.took_over


def test_a_takeover_that_loses_the_race_is_refused(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    _foreign_lease(fake_api, "node-b/7/0badc0de", renewed_ago=120, seconds=30)

    def faster_run() -> None:  # another start's PUT lands between our read and our write
        _foreign_lease(fake_api, "node-c/8/feedface", renewed_ago=0, seconds=30)

    fake_api.hooks.append(Hook("PUT", "leases", faster_run))
    mesh = make_mesh(experiment("canary"))
    with pytest.raises(LeaseHeldError, match=r"holder node-c/8/feedface since .* took the Lease"):
        mesh.hold()
    assert _lease_requests(fake_api, "PUT") == [409]
    assert _lease(fake_api)["holderIdentity"] == "node-c/8/feedface"


def test_a_dry_run_takes_no_lease(make_mesh: MeshFactory, fake_api: FakeKubeAPI) -> None:
    mesh = make_mesh(experiment("canary"), dry_run=True)
    mesh.hold()
    assert mesh.run_lease is None and fake_api.get_object("leases", NS, NAME) is None


def test_the_fake_validates_leases_like_the_api_server(fake_api: FakeKubeAPI) -> None:
    """The fake's Lease answers are the real server's: 400 on undecodable times, 422 on values."""
    import json
    import urllib.request

    def post(spec: dict[str, object]) -> tuple[int, str]:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "x"},
            "spec": spec,
        }
        request = urllib.request.Request(
            f"{fake_api.url}/apis/coordination.k8s.io/v1/namespaces/{NS}/leases",
            data=json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {fake_api.token}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    code, text = post({"holderIdentity": "a", "renewTime": "2026-01-01T00:00:00Z"})
    assert code == 400 and "RFC3339Micro" not in text and "parsing time" in text
    code, text = post({"holderIdentity": "a", "leaseDurationSeconds": 0})
    assert code == 422 and "must be greater than 0" in text
    code, text = post({"holderIdentity": "a", "leaseDurationSecs": 3})
    assert code == 400 and "unknown field" in text
    code, _ = post({"holderIdentity": "a", "leaseDurationSeconds": 3})
    assert code == 201
    code, text = post({"holderIdentity": "b", "leaseDurationSeconds": 3})
    assert code == 409 and "AlreadyExists" in text


@pytest.mark.parametrize(
    ("lease", "message"),
    [
        ({"duration": "1.5s"}, "spec.target.lease.duration: 1.5s is not whole seconds"),
        ({"duration": "10s", "renewEvery": "6s"}, "spec.target.lease.renewEvery: 6s is more than"),
        ({"duration": "0s"}, "spec.target.lease.duration: must be above 0"),
        ({"renewal": "5s"}, "spec.target.lease.renewal: unknown field"),
    ],
)
def test_lease_timings_in_the_spec_are_checked(lease: dict[str, str], message: str) -> None:
    with pytest.raises(SpecError, match=message.replace(".", r"\.")):
        experiment("canary", lease=lease)


def test_lease_and_retry_timings_reach_the_backend(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    exp = experiment(
        "canary",
        lease={"duration": "4s", "renewEvery": "500ms"},
        stepRetry="3s",
        rollbackDeadline="20s",
    )
    mesh: KubernetesMesh = make_mesh(exp)
    assert (mesh.lease_seconds, mesh.renew_every) == (4.0, 0.5)
    assert (mesh.step_retry_seconds, mesh.rollback_deadline) == (3.0, 20.0)
    mesh.hold()
    assert mesh.heartbeat is not None and mesh.heartbeat.every == 0.5
    assert _lease(fake_api)["leaseDurationSeconds"] == 4
    default = experiment("canary").spec.target
    assert (default.lease.duration, default.lease.every) == (30.0, 10.0)
    assert (default.step_retry, default.rollback_deadline) == (10.0, 45.0)


def test_status_shows_the_lease_of_a_run_that_has_not_applied_step_1(
    tmp_path: Path, make_mesh: MeshFactory, fake_api: FakeKubeAPI, kubeconfig: Path
) -> None:
    """A run holds the Lease from before pre-flight; status, from another machine, shows it."""
    path = spec(tmp_path, kubeconfig)
    mesh = make_mesh(load_experiment(path))
    mesh.hold()  # the Lease is taken; pre-flight and the load's warm-up come before step 1
    try:
        shown = meshlab(tmp_path, "status", "-f", str(path), home="another-pod")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "routing read back from the cluster: step absent" in shown.stdout
        assert f"the experiment's Lease: holder {mesh.holder} since " in shown.stdout
    finally:
        mesh.close()
    after = meshlab(tmp_path, "status", "-f", str(path), home="another-pod")
    assert after.returncode == 3, after.stdout + after.stderr  # nothing there: never run here
    assert "no meshlab route in the cluster" in after.stdout
