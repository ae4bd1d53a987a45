"""The fake API server itself, over raw HTTP: the semantics the backend's tests rely on.

If the fake were lenient where a real API server is strict, the backend tests would pass for the
wrong reasons; these tests pin the behaviour to what Kubernetes documents.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import REPO
from tests.kube.fake_apiserver import FakeKubeAPI

BASE = "/apis/networking.istio.io/v1/namespaces/models/virtualservices"
APPLY = {"Content-Type": "application/apply-patch+yaml"}
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
def http(fake_api: FakeKubeAPI, token: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=fake_api.url, headers=headers, timeout=5, trust_env=False) as client:
        yield client


def vs(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "models"},
        "spec": {"hosts": ["web"], **spec},
    }


def test_not_found_distinguishes_missing_types_from_missing_objects(
    http: httpx.Client, fake_api: FakeKubeAPI
) -> None:
    r = http.get("/apis/nope.io/v1/namespaces/models/things/x")
    assert (r.status_code, r.text) == (404, "404 page not found\n")
    r = http.get("/apis/networking.istio.io/v1/namespaces/models/virtualwidgets/x")
    assert r.status_code == 404 and "name" not in r.json().get("details", {})
    r = http.get(f"{BASE}/web")
    assert r.status_code == 404 and r.json()["details"]["name"] == "web"
    fake_api.crds_installed = False
    assert http.get(f"{BASE}/web").text == "404 page not found\n"
    r = httpx.get(fake_api.url + BASE, headers={"Authorization": "Bearer wrong"}, trust_env=False)
    assert r.status_code == 401


def test_server_side_apply_owns_fields_and_removes_what_is_no_longer_applied(
    http: httpx.Client,
) -> None:
    first = vs(gateways=["mesh"], http=[{"name": "a", "route": [{"destination": {"host": "web"}}]}])
    first["metadata"]["annotations"] = {"a": "1", "b": "2"}
    r = http.patch(
        f"{BASE}/web", params={"fieldManager": "meshlab"}, headers=APPLY, content=json.dumps(first)
    )
    assert r.status_code == 201
    other = {"metadata": {"annotations": {"team": "x"}}}
    r = http.patch(
        f"{BASE}/web", params={"fieldManager": "kubectl-edit"}, headers=MERGE, json=other
    )
    assert r.status_code == 200
    second = vs(http=first["spec"]["http"])
    second["metadata"]["annotations"] = {"a": "1"}
    r = http.patch(
        f"{BASE}/web", params={"fieldManager": "meshlab"}, headers=APPLY, content=json.dumps(second)
    )
    body = r.json()
    assert r.status_code == 200
    assert "gateways" not in body["spec"]  # applied before, not now: removed
    assert body["metadata"]["annotations"] == {"a": "1", "team": "x"}  # others' fields stay
    managers = {m["manager"]: m for m in body["metadata"]["managedFields"]}
    assert set(managers) == {"meshlab", "kubectl-edit"}
    assert managers["meshlab"]["operation"] == "Apply"
    assert managers["meshlab"]["fieldsV1"]["f:spec"] == {"f:hosts": {}, "f:http": {}}


def test_apply_conflicts_with_another_manager_unless_forced(http: httpx.Client) -> None:
    http.patch(
        f"{BASE}/web", params={"fieldManager": "meshlab"}, headers=APPLY, content=json.dumps(vs())
    )
    http.patch(
        f"{BASE}/web",
        params={"fieldManager": "argocd"},
        headers=MERGE,
        json={"spec": {"hosts": ["b"]}},
    )
    params = {"fieldManager": "meshlab"}
    r = http.patch(f"{BASE}/web", params=params, headers=APPLY, content=json.dumps(vs()))
    assert r.status_code == 409 and 'conflict with "argocd"' in r.json()["message"]
    r = http.patch(
        f"{BASE}/web", params={**params, "force": "True"}, headers=APPLY, content=json.dumps(vs())
    )
    assert r.status_code == 200 and r.json()["spec"]["hosts"] == ["web"]
    assert [m["manager"] for m in r.json()["metadata"]["managedFields"]] == ["meshlab"]
    r = http.patch(f"{BASE}/web", params={"force": "true"}, headers=MERGE, json={})
    assert r.status_code == 400  # force is for apply only
    r = http.patch(f"{BASE}/web", headers=APPLY, content=json.dumps(vs()))
    assert r.status_code == 422 and "fieldManager" in r.json()["message"]
    r = http.patch(
        f"{BASE}/web", headers={"Content-Type": "application/strategic-merge-patch+json"}, json={}
    )
    assert r.status_code == 415


def test_updates_need_the_current_resource_version(http: httpx.Client) -> None:
    created = http.post(BASE, json=vs()).json()
    assert http.post(BASE, json=vs()).status_code == 409  # AlreadyExists
    assert http.put(f"{BASE}/web", json=vs()).status_code == 422  # no resourceVersion
    changed = {**created, "spec": {"hosts": ["web", "web2"]}}
    r = http.put(f"{BASE}/web", json=changed)
    assert r.status_code == 200
    assert int(r.json()["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"]
    )
    assert r.json()["metadata"]["generation"] == 2
    r = http.put(f"{BASE}/web", json=changed)  # stale now
    assert r.status_code == 409 and "the object has been modified" in r.json()["message"]
    stale = {"preconditions": {"resourceVersion": created["metadata"]["resourceVersion"]}}
    assert http.request("DELETE", f"{BASE}/web", json=stale).status_code == 409
    assert http.put(f"{BASE}/gone", json=vs("gone")).status_code == 404


def test_dry_run_answers_but_persists_nothing(http: httpx.Client, fake_api: FakeKubeAPI) -> None:
    dry = {"dryRun": "All"}
    assert http.post(BASE, params=dry, json=vs()).status_code == 201
    assert fake_api.objects == {}
    created = http.post(BASE, json=vs()).json()
    version = fake_api.resource_version
    r = http.put(f"{BASE}/web", params=dry, json={**created, "spec": {"hosts": ["x"]}})
    assert r.status_code == 200 and r.json()["spec"]["hosts"] == ["x"]
    assert http.request("DELETE", f"{BASE}/web", params=dry).status_code == 200
    apply = {**dry, "fieldManager": "m"}
    assert (
        http.patch(
            f"{BASE}/web", params=apply, headers=APPLY, content=json.dumps(vs(gateways=["g"]))
        ).status_code
        == 200
    )
    assert fake_api.resource_version == version
    assert fake_api.get_object("virtualservices", "models", "web") == created
    assert http.post(BASE, params={"dryRun": "Some"}, json=vs("x")).status_code == 400


def test_bodies_are_validated_strictly_against_the_crd(http: httpx.Client) -> None:
    r = http.post(BASE, json=vs(hostz=["x"]))
    assert r.status_code == 400 and 'unknown field "spec.hostz"' in r.json()["message"]
    bad = vs(http=[{"route": [{"destination": {"host": "web"}}], "timeout": "500us"}])
    r = http.post(BASE, json=bad)
    assert r.status_code == 422 and "spec.http[0].timeout" in r.json()["message"]
    r = http.post(BASE, json=vs(http=[{"match": [{"uri": {"exact": "/", "prefix": "/"}}]}]))
    assert r.status_code == 422 and "oneOf" in r.json()["message"]
    wrong_path = http.post(
        "/apis/networking.istio.io/v1/namespaces/models/destinationrules", json=vs()
    )
    assert wrong_path.status_code == 400
    other_ns = vs()
    other_ns["metadata"]["namespace"] = "default"
    assert http.post(BASE, json=other_ns).status_code == 400


def test_faults_are_recorded_without_secrets(
    http: httpx.Client, fake_api: FakeKubeAPI, token: str
) -> None:
    fake_api.deny.add(("create", "virtualservices"))
    r = http.post(BASE, json=vs())
    assert r.status_code == 403 and "cannot create resource" in r.json()["message"]
    r = http.patch(
        f"{BASE}/web", params={"fieldManager": "m"}, headers=APPLY, content=json.dumps(vs())
    )
    assert r.status_code == 403  # apply that would create needs create too
    assert token not in repr(fake_api.requests)
    assert [q.status for q in fake_api.requests] == [403, 403]


ROUTES = "/apis/gateway.networking.k8s.io/v1/namespaces/models/httproutes"
SERVICES = "/api/v1/namespaces/models/services"


def _http_route(**rule: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": "models"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "web", "port": 80}],
            "rules": [{"backendRefs": [{"name": "web-v1", "port": 80}], **rule}],
        },
    }


def test_http_routes_are_validated_by_schema_and_cel_and_stored_with_defaults(
    http: httpx.Client,
) -> None:
    params = {"fieldManager": "meshlab"}
    r = http.patch(f"{ROUTES}/web", params=params, headers=APPLY, content=json.dumps(_http_route()))
    assert r.status_code == 201, r.text
    stored = r.json()
    ref = stored["spec"]["rules"][0]["backendRefs"][0]
    assert (ref["group"], ref["kind"], ref["weight"]) == ("", "Service", 1)  # CRD defaults
    assert stored["spec"]["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    bad = _http_route(timeouts={"request": "1s", "backendRequest": "2s"})  # a CEL rule
    r = http.patch(f"{ROUTES}/web", params=params, headers=APPLY, content=json.dumps(bad))
    assert r.status_code == 422 and "backendRequest" in r.text
    bad = _http_route(bogus=True)
    r = http.patch(f"{ROUTES}/web", params=params, headers=APPLY, content=json.dumps(bad))
    assert r.status_code == 400 and "strict decoding error" in r.text
    r = http.get(f"{ROUTES}/nope")
    assert r.status_code == 404 and r.json()["details"]["name"] == "nope"
    assert 'httproutes.gateway.networking.k8s.io "nope" not found' in r.json()["message"]


def test_core_services_are_served_at_the_core_path_with_server_assigned_fields(
    http: httpx.Client, fake_api: FakeKubeAPI
) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web-v1", "namespace": "models"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    params = {"fieldManager": "meshlab"}
    r = http.patch(f"{SERVICES}/web-v1", params=params, headers=APPLY, content=json.dumps(service))
    assert r.status_code == 201, r.text
    spec = r.json()["spec"]
    assert (
        spec["type"] == "ClusterIP" and spec["clusterIP"] and spec["ports"][0]["protocol"] == "TCP"
    )
    again = http.patch(
        f"{SERVICES}/web-v1", params=params, headers=APPLY, content=json.dumps(service)
    )
    assert again.json()["spec"]["clusterIP"] == spec["clusterIP"]  # kept, as a real server does
    service["spec"]["ports"][0]["port"] = 70000
    r = http.patch(f"{SERVICES}/web-v1", params=params, headers=APPLY, content=json.dumps(service))
    assert r.status_code == 422 and "65535" in r.text
    r = http.get(f"{SERVICES}/nope")
    assert r.status_code == 404 and 'services "nope" not found' in r.json()["message"]
    fake_api.deny.add(("delete", "services"))
    r = http.delete(f"{SERVICES}/web-v1")
    assert r.status_code == 403
    assert (
        'cannot delete resource "services" in API group "" in the namespace' in r.json()["message"]
    )


ROLLOUTS = "/apis/argoproj.io/v1alpha1/namespaces/models/rollouts"


@pytest.fixture
def argo(token: str) -> Iterator[httpx.Client]:
    """The fake serving Argo Rollouts' vendored CRD too: the one with a transition rule."""
    crd = REPO / "istio_manifests/crds/argo-rollouts/rollout-crd.yaml"
    api = FakeKubeAPI(token=token, extra_crds=(crd,)).start()
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=api.url, headers=headers, timeout=5, trust_env=False) as client:
            yield client
    finally:
        api.stop()
    assert not api.internal_errors, api.internal_errors


def test_an_immutable_field_is_refused_on_update_like_the_api_server(argo: httpx.Client) -> None:
    """``self == oldSelf`` (Rollout ``.spec.selector``) holds on update, never on create."""
    rollout = yaml.safe_load((REPO / "istio_manifests/serve/argo-rollout.yaml").read_text())
    created = argo.post(ROLLOUTS, json=rollout)
    assert created.status_code == 201, created.text
    stored = created.json()
    moved = json.loads(json.dumps(stored))
    moved["spec"]["selector"]["matchLabels"] = {"app": "fraud-model-v2"}
    for answer in (
        argo.put(f"{ROLLOUTS}/fraud-model", json=moved),
        argo.patch(
            f"{ROLLOUTS}/fraud-model",
            headers=MERGE,
            content=json.dumps({"spec": {"selector": {"matchLabels": {"app": "other"}}}}),
        ),
        argo.patch(
            f"{ROLLOUTS}/fraud-model",
            params={"fieldManager": "kubectl", "force": "true"},
            headers=APPLY,
            content=json.dumps({**rollout, "spec": moved["spec"]}),
        ),
    ):
        assert answer.status_code == 422, answer.text
        status = answer.json()
        assert status["reason"] == "Invalid"
        assert "spec.selector: .spec.selector is immutable" in status["message"]
    scaled = json.loads(json.dumps(stored))
    scaled["spec"]["replicas"] = 6  # the selector as stored: the rule holds
    assert argo.put(f"{ROLLOUTS}/fraud-model", json=scaled).status_code == 200
    other = {**rollout, "metadata": {"name": "fresh", "namespace": "models"}}
    other["spec"] = {**rollout["spec"], "selector": {"matchLabels": {"app": "anything"}}}
    assert argo.post(ROLLOUTS, json=other).status_code == 201  # no oldSelf on create
