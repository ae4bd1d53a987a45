"""A new routing API is one module and one registry line: nothing else changes for a cluster.

The registry line is added for the test (``monkeypatch`` on ``meshlab.registry.ROUTING``); the
module is :mod:`tests.kube.routing_v1beta1`. The spec accepts the new name, and the Kubernetes
backend drives it against the fake API server (the faithful fake of tests/kube/: it serves the
HTTPRoute CRD's v1beta1 with schema and CEL validation): every step applied at the v1beta1 REST
path and read back, rollback confirmed, cleanup complete.
"""

from __future__ import annotations

import pytest

from meshlab.manifests import all_steps, routing_plan
from meshlab.registry import ROUTING
from tests.kube.conftest import MeshFactory, gateway_experiment, parent_service
from tests.kube.fake_apiserver import FakeKubeAPI

NAME = "gateway-api-v1beta1"


def test_a_routing_api_added_by_one_module_and_one_registry_line_runs_on_a_cluster(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ROUTING.entries, NAME, "tests.kube.routing_v1beta1:render_v1beta1")  # type: ignore[index]
    fake_api.put_object(parent_service())
    exp = gateway_experiment("shadow", routing=NAME)
    assert exp.spec.target.routing == NAME
    mesh = make_mesh(exp)
    for step in all_steps(exp):
        mesh.apply(routing_plan(exp, step))
        route = fake_api.get_object("httproutes", "models", "meshlab-fraud-shadow")
        assert route is not None and route["apiVersion"] == "gateway.networking.k8s.io/v1beta1"
        state = mesh.status()
        assert state is not None and state.step == step.name
    paths = {r.path.split("?")[0] for r in fake_api.requests if "httproutes" in r.path}
    assert paths == {
        "/apis/gateway.networking.k8s.io/v1beta1/namespaces/models/httproutes/meshlab-fraud-shadow"
    }
    mesh.cleanup()
    assert set(fake_api.objects) == {("services", "models", "fraud-model")}
