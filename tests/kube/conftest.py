"""Fixtures of the Kubernetes backend tests: the fake API server, a kubeconfig for it, backends.

The fake listens on 127.0.0.1 on a free port and is stopped even when a test fails; every backend a
test builds is closed. The kubeconfig carries a random bearer token that tests assert never shows
up in logs or error messages.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshlab.mesh.kubernetes import KubernetesMesh
from meshlab.spec import Experiment
from meshlab.spec.loading import parse_experiment
from tests.kube.cli_support import announced_url
from tests.kube.fake_apiserver import FakeKubeAPI

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "istio_manifests" / "examples"
STRATEGIES = ("canary", "shadow", "bluegreen", "abtest")


@pytest.fixture
def model_url() -> Iterator[str]:
    """A loopback model server that labels each response with a random arm (no data plane here)."""
    server = REPO / "loadtests/support/arm_server.py"
    with announced_url([sys.executable, str(server), "--port", "0", "--arm", "random:0.5"]) as url:
        yield url


@pytest.fixture
def token() -> str:
    return "meshlab-fake-token-" + secrets.token_hex(16)


@pytest.fixture
def fake_api(token: str) -> Iterator[FakeKubeAPI]:
    api = FakeKubeAPI(token=token).start()
    try:
        yield api
    finally:
        api.stop()
    assert not api.internal_errors, api.internal_errors


@pytest.fixture
def kubeconfig(tmp_path: Path, fake_api: FakeKubeAPI, token: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": fake_api.url}}],
                "users": [{"name": "meshlab", "user": {"token": token}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "meshlab"}}],
                "current-context": "fake",
            }
        )
    )
    path.chmod(0o600)
    return path


def experiment(strategy: str = "canary", **target: Any) -> Experiment:
    """One of the golden example experiments, aimed at Kubernetes with ``target`` overrides."""
    data = yaml.safe_load((EXAMPLES / f"{strategy}.experiment.yaml").read_text())
    data["spec"]["target"] = {"kind": "kubernetes", "requestTimeout": "2s", **target}
    return parse_experiment(data)


MeshFactory = Callable[..., KubernetesMesh]


@pytest.fixture
def make_mesh(kubeconfig: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MeshFactory]:
    """Build backends talking to the fake through the kubeconfig (no proxy, no in-cluster env)."""
    for name in (
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "KUBERNETES_SERVICE_HOST",
    ):
        monkeypatch.delenv(name, raising=False)
    built: list[KubernetesMesh] = []

    def make(
        exp: Experiment | None = None, *, dry_run: bool = False, **target: Any
    ) -> KubernetesMesh:
        mesh = KubernetesMesh.from_spec(
            exp or experiment(**target), kubeconfig=str(kubeconfig), dry_run=dry_run
        )
        built.append(mesh)
        return mesh

    try:
        yield make
    finally:
        for mesh in built:
            mesh.close()


def user_virtual_service() -> dict[str, Any]:
    """A VirtualService a team owns, for meshlab to adopt: two routes and fields meshlab must keep."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {
            "name": "fraud-routes",
            "namespace": "models",
            "labels": {"app": "fraud"},
            "annotations": {"team": "fraud"},
        },
        "spec": {
            "hosts": ["fraud-model", "fraud.example.com"],
            "gateways": ["mesh", "public"],
            "exportTo": ["."],
            "http": [
                {
                    "name": "legacy",
                    "match": [{"uri": {"prefix": "/v0/"}}],
                    "rewrite": {"uri": "/"},
                    "route": [{"destination": {"host": "fraud-legacy"}}],
                },
                {
                    "name": "default",
                    "route": [{"destination": {"host": "fraud-model", "subset": "v1"}}],
                    "retries": {"attempts": 2, "perTryTimeout": "2s"},
                },
            ],
        },
    }


GATEWAY_EXAMPLES = EXAMPLES / "gateway-api"


def gateway_experiment(strategy: str = "canary", **target: Any) -> Experiment:
    """A golden Gateway API example experiment (``routing: gateway-api``) aimed at Kubernetes."""
    data = yaml.safe_load((GATEWAY_EXAMPLES / f"{strategy}.experiment.yaml").read_text())
    data["spec"]["target"] = {
        "kind": "kubernetes",
        "routing": "gateway-api",
        "requestTimeout": "2s",
        **target,
    }
    return parse_experiment(data)


def parent_service() -> dict[str, Any]:
    """The model's own Service, which a GAMMA HTTPRoute attaches to (the team created it)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "fraud-model", "namespace": "models", "labels": {"app": "fraud"}},
        "spec": {
            "selector": {"app": "fraud-model", "tier": "serving"},
            "ports": [{"name": "http", "port": 8080, "targetPort": "http-model"}],
        },
    }


def user_http_route() -> dict[str, Any]:
    """An HTTPRoute a team owns for the model's Service, for meshlab to adopt."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": "fraud-routes",
            "namespace": "models",
            "labels": {"app": "fraud"},
            "annotations": {"team": "fraud"},
        },
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "fraud-model", "port": 8080}],
            "rules": [
                {
                    "name": "legacy",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/v0"}}],
                    "backendRefs": [{"name": "fraud-legacy", "port": 8080}],
                },
                {
                    "name": "default",
                    "backendRefs": [{"name": "fraud-model", "port": 8080}],
                    "timeouts": {"request": "5s"},
                },
            ],
        },
    }


def backends(route: dict[str, Any]) -> set[str]:
    """Services that receive primary traffic (weight > 0) or mirrored copies from a route."""
    out = set()
    for rule in route["spec"]["rules"]:
        out |= {b["name"] for b in rule["backendRefs"] if b.get("weight", 1) > 0}
        for f in rule.get("filters", []):
            if f["type"] == "RequestMirror":
                out.add(f["requestMirror"]["backendRef"]["name"])
    return out


def stored(fake: FakeKubeAPI, plural: str, name: str) -> dict[str, Any]:
    """The object as the fake stores it in namespace ``models``; fails the test if missing."""
    obj = fake.get_object(plural, "models", name)
    assert obj is not None, f"{plural}/{name} missing"
    return obj
