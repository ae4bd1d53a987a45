"""The local mesh routed from either API: every strategy, REAL Envoy, the same routes and traffic.

Two local meshes run side by side (each: two real model servers, two sidecar Envoys and the
outbound Envoy, loopback only, every process stopped by PID in ``finally``): one with
``target.routing: istio``, one with ``target.routing: gateway-api``. For every step of every
strategy both are given the same :class:`~meshlab.manifests.routing.RoutingPlan`; each renders it
in its own API (VirtualService or HTTPRoute) and translates that to Envoy routes. Envoy's config
dump must then hold the same route configuration in both, and real traffic sent through both must
split, mirror and match alike (a homogeneity test on the arm counts, exact equality for matches).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from scipy import stats

from meshlab.manifests import all_steps, plan, routing_plan
from meshlab.mesh.local import LocalMesh
from meshlab.mesh.router import read_routes
from meshlab.spec import Experiment
from tests.mesh.conftest import EXAMPLES, Client, example

pytestmark = pytest.mark.envoy
STRATEGIES = ("canary.yaml", "shadow.yaml", "bluegreen.yaml", "abtest.yaml")
P_FLOOR = 0.001  # a correct mesh fails these checks once in a thousand runs


def _routed(exp: Experiment, routing: str) -> Experiment:
    target = exp.spec.target.model_copy(update={"routing": routing})
    return exp.model_copy(update={"spec": exp.spec.model_copy(update={"target": target})})


@pytest.fixture(scope="module")
def meshes() -> Iterator[dict[str, LocalMesh]]:
    """``{"istio": mesh, "gateway-api": mesh}``, both for the canary example; always stopped."""
    started: dict[str, LocalMesh] = {}
    try:
        for routing in ("istio", "gateway-api"):
            mesh = LocalMesh(_routed(example("canary.yaml"), routing), here=EXAMPLES)
            started[routing] = mesh
            mesh.start()
        yield started
    finally:
        for mesh in started.values():
            mesh.close()


def _route_config(mesh: LocalMesh) -> dict[str, Any]:
    """The routes the outbound Envoy holds, without meshlab's per-apply stamp (route metadata)."""
    assert mesh.outbound is not None
    entry = read_routes(mesh.outbound.admin_url)
    assert entry is not None
    config = dict(entry["route_config"])
    for host in config.get("virtual_hosts", []):
        for route in host.get("routes", []):
            route.pop("metadata", None)
    return config


def _same_plan(exp: Experiment) -> Experiment:
    """The experiment as the canary mesh runs it (same name, versions, host): another strategy."""
    return exp.model_copy(update={"metadata": example("canary.yaml").metadata})


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_step_gives_envoy_the_same_routes_from_either_api(
    meshes: dict[str, LocalMesh], name: str
) -> None:
    exp = _same_plan(example(name))
    assert meshes["gateway-api"].experiment.spec.target.routing == "gateway-api"
    for step in all_steps(exp):
        routing_plan_ = routing_plan(exp, step)
        for mesh in meshes.values():
            mesh.apply(routing_plan_)
            state = mesh.status()
            assert state is not None and state.step == step.name
        istio, gateway = (_route_config(meshes[r]) for r in ("istio", "gateway-api"))
        assert gateway == istio, f"{name} step {step.name}"


def _arms(mesh: LocalMesh, n: int, prefix: str, **headers: str) -> Counter[str]:
    results = Client(mesh.url).send(n, prefix, headers=headers)
    assert all(r.status == 200 for r in results)
    return Counter(r.arm for r in results)


def test_a_canary_split_is_the_same_under_either_api(meshes: dict[str, LocalMesh]) -> None:
    exp = example("canary.yaml")
    step = plan(exp)[1]  # 25%
    counts = {}
    for routing, mesh in meshes.items():
        mesh.apply(routing_plan(exp, step))
        counts[routing] = _arms(mesh, 1000, f"split-{routing}")
    table = [[c["baseline"], c["candidate"]] for c in counts.values()]
    p_same = stats.chi2_contingency(table).pvalue
    p_weight = stats.binomtest(table[1][1], 1000, step.candidate_weight / 100).pvalue
    print(f"split istio={table[0]} gateway-api={table[1]} homogeneity p={p_same:.3f}")
    assert p_same > P_FLOOR and p_weight > P_FLOOR


def test_a_shadow_mirror_is_the_same_under_either_api(meshes: dict[str, LocalMesh]) -> None:
    exp = _same_plan(example("canary.yaml", strategy="shadow", shadow={"mirrorPercent": 100}))
    step = plan(exp)[0]
    for routing, mesh in meshes.items():
        mesh.apply(routing_plan(exp, step))
        assert _arms(mesh, 200, f"shadow-{routing}") == Counter({"baseline": 200}), routing
        assert mesh.outbound is not None
        # The mirror is in the routes Envoy holds (its copies are the tap's business, tested in
        # test_local_envoy); both APIs mirror every request to the candidate's cluster.
        policies = [
            p["cluster"]
            for host in _route_config(mesh)["virtual_hosts"]
            for route in host["routes"]
            for p in route["route"].get("request_mirror_policies", [])
        ]
        assert policies and all("|v2|" in c for c in policies), routing


def test_header_matches_route_alike_under_either_api(meshes: dict[str, LocalMesh]) -> None:
    exp = _same_plan(
        example(
            "abtest.yaml",
            abtest={
                "match": [
                    {"headers": {"x-user-group": {"exact": "beta"}}},
                    {"headers": {"x-tier": {"prefix": "gold"}}},
                    {"headers": {"x-region": {"regex": "eu-(west|north)-[0-9]"}}},
                ]
            },
        )
    )
    cases = [
        ({"x-user-group": "beta"}, "candidate"),
        ({"x-user-group": "betamax"}, "baseline"),
        ({"x-tier": "gold-plus"}, "candidate"),
        ({"x-tier": "silver"}, "baseline"),
        ({"x-region": "eu-west-1"}, "candidate"),
        ({"x-region": "eu-south-1"}, "baseline"),
        ({}, "baseline"),
    ]
    for routing, mesh in meshes.items():
        mesh.apply(routing_plan(exp, plan(exp)[0]))
        for i, (headers, arm) in enumerate(cases):
            got = _arms(mesh, 20, f"match-{routing}-{i}", **headers)
            assert set(got) == {arm}, (routing, headers)


def test_rollback_from_either_api_sends_everything_to_the_baseline(
    meshes: dict[str, LocalMesh],
) -> None:
    exp = example("canary.yaml")
    for routing, mesh in meshes.items():
        mesh.apply(routing_plan(exp, plan(exp)[-1]))
        mesh.rollback()
        state = mesh.status()
        assert state is not None and state.step == "rollback"
        assert set(_arms(mesh, 100, f"rollback-{routing}")) == {"baseline"}, routing
