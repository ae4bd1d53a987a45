"""The Kubernetes backend with ``target.routing: gateway-api``, against the fake API server.

The API server is the faithful fake of tests/kube/ (no cluster can run here): it serves
``gateway.networking.k8s.io/v1`` HTTPRoutes validated against the vendored CRD's schema and CEL
rules and stored with its defaults, and core ``v1`` Services, with the same REST paths,
resourceVersions and server-side apply as for Istio's objects. Under test: every step of every
strategy is applied as valid objects and read back, backend Services are completed from the
parent Service, a rollback is confirmed from the server's answer, a failed first step leaves
nothing behind, the lease lives on the HTTPRoute, and a user's HTTPRoute is adopted (only
meshlab's rules change) and restored exactly.
"""

from __future__ import annotations

import copy
import time

import pytest

from meshlab.errors import ConfigError, MeshError
from meshlab.manifests import all_steps, plan, render_step, routing_plan
from meshlab.mesh.base import MeshBackend, RoutingState
from meshlab.mesh.kube_objects import not_as_rendered
from tests.kube.conftest import (
    STRATEGIES,
    MeshFactory,
    backends,
    gateway_experiment,
    parent_service,
    stored,
    user_http_route,
)
from tests.kube.fake_apiserver import FakeKubeAPI
from tests.support.gateway_schema import validate_gateway

NS = "models"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_step_of_every_strategy_is_applied_and_read_back(
    strategy: str, make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    fake_api.put_object(parent_service())
    exp = gateway_experiment(strategy)
    mesh = make_mesh(exp)
    assert isinstance(mesh, MeshBackend) and mesh.route_kind == "HTTPRoute"
    name = f"meshlab-{exp.metadata.name}"
    assert mesh.status() is None
    for step in all_steps(exp):
        mesh.clock = lambda: 1_800_000_000.25
        mesh.apply(routing_plan(exp, step))
        *services, route = render_step(exp, step)
        got = stored(fake_api, "httproutes", name)
        validate_gateway(got)  # stored (defaulted) object is still schema- and CEL-valid
        # all of it, server defaults aside, and no rule of an earlier step lingers
        assert not_as_rendered(got["spec"], route["spec"]) is None
        assert got["metadata"]["annotations"]["meshlab.io/step"] == step.name
        assert [m["manager"] for m in got["metadata"]["managedFields"]] == ["meshlab"]
        for service in services:
            svc = stored(fake_api, "services", service["metadata"]["name"])
            labels = dict(service["spec"]["selector"])
            assert svc["spec"]["selector"] == {"app": "fraud-model", "tier": "serving", **labels}
            assert svc["spec"]["ports"][0]["targetPort"] == "http-model"  # the parent's
        assert mesh.status() == RoutingState(exp.metadata.name, step.name, 1_800_000_000.25)
    baseline = f"meshlab-fraud-model-{exp.spec.baseline.subset}"
    assert backends(stored(fake_api, "httproutes", name)) == {baseline}


def test_rollback_is_confirmed_from_the_server_and_cleanup_leaves_the_parent(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    fake_api.put_object(parent_service())
    exp = gateway_experiment("shadow")
    mesh = make_mesh(exp)
    mesh.rollback()  # nothing applied yet: routing is left alone
    assert set(fake_api.objects) == {("services", NS, "fraud-model")}
    mesh.apply(routing_plan(exp, plan(exp)[1]))
    route = stored(fake_api, "httproutes", "meshlab-fraud-shadow")
    assert backends(route) == {"meshlab-fraud-model-v1", "meshlab-fraud-model-v2"}
    make_mesh(exp).rollback()  # from "another machine"
    route = stored(fake_api, "httproutes", "meshlab-fraud-shadow")
    assert backends(route) == {"meshlab-fraud-model-v1"}
    assert route["metadata"]["annotations"]["meshlab.io/step"] == "rollback"
    state = mesh.status()
    assert state is not None and state.step == "rollback"
    mesh.cleanup()
    assert set(fake_api.objects) == {("services", NS, "fraud-model")}
    mesh.cleanup()  # idempotent


def test_a_missing_parent_service_is_a_clear_error_and_nothing_is_written(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    exp = gateway_experiment("canary")
    with pytest.raises(MeshError, match=r"spec\.service\.host: its Service does not exist") as info:
        make_mesh(exp).apply(routing_plan(exp, plan(exp)[0]))
    assert "\n" not in str(info.value)
    assert fake_api.objects == {}
    other = parent_service()
    other["spec"]["ports"][0]["port"] = 9000
    fake_api.put_object(other)
    with pytest.raises(MeshError, match=r"spec\.service\.port: Service fraud-model has no port"):
        make_mesh(exp).apply(routing_plan(exp, plan(exp)[0]))
    assert set(fake_api.objects) == {("services", NS, "fraud-model")}


def test_a_refused_first_route_undoes_the_backend_services(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    fake_api.put_object(parent_service())
    exp = gateway_experiment("canary")
    fake_api.deny.add(("create", "httproutes"))
    with pytest.raises(MeshError) as info:
        make_mesh(exp).apply(routing_plan(exp, plan(exp)[0]))
    assert "'create' on httproutes.gateway.networking.k8s.io" in str(info.value)
    assert set(fake_api.objects) == {("services", NS, "fraud-model")}


def test_the_server_rejects_an_invalid_route_by_its_cel_rules(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    fake_api.put_object(parent_service())
    exp = gateway_experiment("canary")
    mesh = make_mesh(exp)
    step = plan(exp)[0]
    mesh.apply(routing_plan(exp, step))
    before = stored(fake_api, "httproutes", "meshlab-fraud-canary")
    bad = render_step(exp, plan(exp)[1])
    rule = bad[-1]["spec"]["rules"][0]
    rule["timeouts"] = {"request": "1s", "backendRequest": "2s"}  # CEL: backendRequest <= request
    with pytest.raises(MeshError, match=r"422 .*backendRequest"):
        mesh.apply_objects("2", bad)
    assert stored(fake_api, "httproutes", "meshlab-fraud-canary") == before


def test_dry_run_validates_on_the_server_and_persists_nothing(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    fake_api.put_object(parent_service())
    version = fake_api.resource_version
    exp = gateway_experiment("abtest")
    mesh = make_mesh(exp, dry_run=True)
    for step in all_steps(exp):
        mesh.apply(routing_plan(exp, step))
        assert [o["kind"] for o in mesh.last_applied] == ["Service", "Service", "HTTPRoute"]
    assert set(fake_api.objects) == {("services", NS, "fraud-model")}
    assert fake_api.resource_version == version
    assert all(r.dry_run for r in fake_api.requests if r.method != "GET")


def test_the_lease_lives_on_the_http_route(make_mesh: MeshFactory, fake_api: FakeKubeAPI) -> None:
    fake_api.put_object(parent_service())
    exp = gateway_experiment("canary")
    mesh = make_mesh(exp)
    mesh.lease_seconds = 0.6
    mesh.hold()
    mesh.apply(routing_plan(exp, plan(exp)[0]))
    first = stored(fake_api, "httproutes", "meshlab-fraud-canary")["metadata"]["annotations"]
    assert first["meshlab.io/holder"] == mesh.holder
    deadline = time.monotonic() + 5
    while mesh.heartbeat is not None and mesh.heartbeat.renewals < 2:
        assert time.monotonic() < deadline, "the heartbeat was never renewed"
        time.sleep(0.05)
    lease = make_mesh(exp).lease()
    assert lease is not None and lease.holder == mesh.holder and lease.alive(time.time())
    mesh.close()
    annotations = stored(fake_api, "httproutes", "meshlab-fraud-canary")["metadata"]["annotations"]
    assert "meshlab.io/holder" not in annotations
    assert annotations["meshlab.io/step"] == "1"


def test_adopting_an_http_route_changes_only_meshlabs_rules_and_restores_it_exactly(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    fake_api.put_object(parent_service())
    original = fake_api.put_object(user_http_route())  # as stored: with the CRD's defaults
    exp = gateway_experiment("bluegreen", adoptHTTPRoute="fraud-routes")
    mesh = make_mesh(exp)
    assert mesh.status() is None
    for step in plan(exp):
        mesh.apply(routing_plan(exp, step))
        route = stored(fake_api, "httproutes", "fraud-routes")
        ours = render_step(exp, step)[-1]["spec"]["rules"]
        rules = route["spec"]["rules"]
        assert not_as_rendered(rules[: len(ours)], ours) is None  # meshlab's first
        assert rules[len(ours) :] == original["spec"]["rules"]  # the user's, untouched
        assert route["spec"]["parentRefs"] == original["spec"]["parentRefs"]
        assert route["metadata"]["annotations"]["team"] == "fraud"
        validate_gateway(route)
        state = make_mesh(exp).status()
        assert state is not None and state.step == step.name
    assert fake_api.get_object("httproutes", NS, "meshlab-fraud-bluegreen") is None
    make_mesh(exp).rollback()
    route = stored(fake_api, "httproutes", "fraud-routes")
    assert route["spec"] == original["spec"]
    assert route["metadata"]["labels"] == original["metadata"]["labels"]
    assert route["metadata"]["annotations"] == original["metadata"]["annotations"]
    assert mesh.status() is None
    mesh.cleanup()
    assert set(fake_api.objects) == {
        ("httproutes", NS, "fraud-routes"),
        ("services", NS, "fraud-model"),
    }


def test_adopting_the_wrong_kind_or_route_is_refused(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    with pytest.raises(ConfigError, match=r"spec\.target\.adoptVirtualService: .*adoptHTTPRoute"):
        make_mesh(gateway_experiment("canary", adoptVirtualService="fraud-routes"))
    fake_api.put_object(parent_service())
    other = copy.deepcopy(user_http_route())
    other["spec"]["parentRefs"][0]["name"] = "another-model"
    fake_api.put_object(other)
    exp = gateway_experiment("canary", adoptHTTPRoute="fraud-routes")
    with pytest.raises(MeshError, match=r"adoptHTTPRoute: HTTPRoute models/fraud-routes does not"):
        make_mesh(exp).apply(routing_plan(exp, plan(exp)[0]))
