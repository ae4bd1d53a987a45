"""API server faults during a step and during a rollback, against the fake API server.

The Kubernetes API cannot run here, so faults are injected into the faithful fake of tests/kube/
(``FakeKubeAPI.fail``): 5xx/429 answered unprocessed, or requests hung until the client's timeout.
The rules under test: a step retries only what the server did not carry out (5xx, refused) for a
short while and otherwise fails with the previous step in force; a rollback retries every transient
failure within its deadline, claims success only from the server's answer, and when it gives up
says in one line what is still routed where.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from meshlab.errors import MeshError
from meshlab.manifests import plan, routing_plan
from meshlab.mesh.kube_client import KubeTimeoutError, KubeUnavailableError
from tests.kube.conftest import MeshFactory, experiment, user_virtual_service
from tests.kube.fake_apiserver import FakeKubeAPI

NS, NAME = "models", "meshlab-fraud-canary"


def _step_in_force(fake: FakeKubeAPI, plural: str = "virtualservices") -> str:
    obj = fake.get_object(plural, NS, NAME)
    assert obj is not None
    return str(obj["metadata"]["annotations"]["meshlab.io/step"])


def _baseline_only(vs: dict[str, Any]) -> bool:
    return all(
        d["destination"]["subset"] == "v1" for r in vs["spec"]["http"] for d in r["route"]
    ) and all("mirror" not in r for r in vs["spec"]["http"])


@pytest.mark.parametrize("status", [500, 503, 429])
def test_a_step_rides_out_a_few_server_errors(
    status: int, make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    exp = experiment("canary")
    mesh = make_mesh(exp)
    one, two = plan(exp)[:2]
    mesh.apply(routing_plan(exp, one))
    fake_api.fail("PATCH", "virtualservices", times=2, status=status)
    mesh.apply(routing_plan(exp, two))
    assert _step_in_force(fake_api) == "2"
    answered = [r.status for r in fake_api.requests if r.path.endswith(f"virtualservices/{NAME}")]
    assert answered[-3:] == [status, status, 200]


def test_a_step_the_server_keeps_failing_leaves_the_previous_step(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    exp = experiment("canary")
    mesh = make_mesh(exp)
    mesh.step_retry_seconds = 1.0
    one, two = plan(exp)[:2]
    mesh.apply(routing_plan(exp, one))
    fake_api.fail("PATCH", "virtualservices", times=1000, status=500)
    began = time.monotonic()
    with pytest.raises(KubeUnavailableError, match=r"500 .* on apply VirtualService") as info:
        mesh.apply(routing_plan(exp, two))
    assert time.monotonic() - began < 5
    assert "\n" not in str(info.value)
    assert _step_in_force(fake_api) == "1"
    assert _step_in_force(fake_api, "destinationrules") == "1"  # the DR was put back too


def test_a_step_that_timed_out_is_not_blindly_resent(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    exp = experiment("canary", requestTimeout="1s")
    mesh = make_mesh(exp)
    one, two = plan(exp)[:2]
    mesh.apply(routing_plan(exp, one))
    fake_api.fail("PATCH", "virtualservices", times=1, hang=1.5)
    with pytest.raises(KubeTimeoutError):
        mesh.apply(routing_plan(exp, two))
    time.sleep(0.8)  # the fake records the hung request when it gives up on it, at 1.5 s
    patches = [r for r in fake_api.requests if r.method == "PATCH" and "virtualservices" in r.path]
    assert [r.status for r in patches] == [201, 0]  # step 1, then one hung attempt, not repeated
    assert _step_in_force(fake_api) == "1"


def test_rollback_retries_errors_and_timeouts_then_confirms(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    exp = experiment("canary", requestTimeout="1s")
    mesh = make_mesh(exp)
    two = plan(exp)[1]
    mesh.apply(routing_plan(exp, two))
    fake_api.fail("GET", "virtualservices", times=1, status=503)
    fake_api.fail("PATCH", "virtualservices", times=1, hang=1.5)
    fake_api.fail("PATCH", "virtualservices", times=2, status=500)
    began = time.time()
    mesh.rollback()
    vs = fake_api.get_object("virtualservices", NS, NAME)
    assert vs is not None and _baseline_only(vs)
    assert vs["metadata"]["annotations"]["meshlab.io/step"] == "rollback"
    done = max(r.at for r in fake_api.requests if r.status == 200 and r.method == "PATCH")
    print(f"rollback applied {done - began:.2f} s after the first fault (503, hang, 500, 500)")
    assert not any(f.times for f in fake_api.failures)  # every fault was met and ridden out


def test_rollback_that_cannot_reach_the_server_says_what_is_still_routed(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    exp = experiment("canary")
    mesh = make_mesh(exp)
    mesh.rollback_deadline = 1.5
    two = plan(exp)[1]
    mesh.apply(routing_plan(exp, two))
    fake_api.fail("*", "*", times=10_000, status=503)
    began = time.monotonic()
    with pytest.raises(MeshError) as info:
        mesh.rollback()
    took = time.monotonic() - began
    message = str(info.value)
    assert 1.0 < took < 5.0
    assert "\n" not in message
    assert message.startswith("rollback NOT applied after")
    assert "503" in message
    assert f"VirtualService {NS}/{NAME} still routes canary 25% (step 2)" in message
    assert "meshlab rollback" in message
    assert _step_in_force(fake_api) == "2"


def test_rollback_of_an_adopted_virtual_service_retries_too(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    original = fake_api.put_object(user_virtual_service())
    exp = experiment("abtest", adoptVirtualService="fraud-routes")
    mesh = make_mesh(exp)
    step = plan(exp)[0]
    mesh.apply(routing_plan(exp, step))
    fake_api.fail("PUT", "virtualservices", times=2, status=500)
    mesh.rollback()
    restored = fake_api.get_object("virtualservices", NS, "fraud-routes")
    assert restored is not None
    assert restored["spec"] == original["spec"]
    assert restored["metadata"]["annotations"] == original["metadata"]["annotations"]
