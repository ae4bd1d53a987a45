"""The Kubernetes mesh backend against the fake API server: apply, status, rollback, failures."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshlab.errors import ConflictError, MeshError
from meshlab.manifests import all_steps, manifests, plan, rollback, routing_plan
from meshlab.mesh.base import MeshBackend, RoutingState
from meshlab.mesh.kubernetes import KubernetesMesh
from tests.kube.conftest import (
    STRATEGIES,
    MeshFactory,
    experiment,
    stored,
    user_virtual_service,
)
from tests.kube.fake_apiserver import FakeKubeAPI, Hook
from tests.support.istio_schema import validate_istio

NS = "models"


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_step_of_every_strategy_is_applied_and_read_back(
    strategy: str, make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    exp = experiment(strategy)
    mesh = make_mesh(exp)
    assert isinstance(mesh, MeshBackend)
    name = f"meshlab-{exp.metadata.name}"
    assert mesh.status() is None
    for step in all_steps(exp):
        mesh.clock = lambda: 1_800_000_000.25
        dr, vs = manifests(exp, step)
        mesh.apply_objects(step.name, [dr, vs])
        got_vs, got_dr = (
            stored(fake_api, "virtualservices", name),
            stored(fake_api, "destinationrules", name),
        )
        assert got_vs["spec"] == vs["spec"]  # routes of an earlier step never linger
        assert got_dr["spec"] == dr["spec"]
        assert got_vs["metadata"]["annotations"]["meshlab.io/step"] == step.name
        assert [m["manager"] for m in got_vs["metadata"]["managedFields"]] == ["meshlab"]
        validate_istio(got_vs)
        assert mesh.status() == RoutingState(exp.metadata.name, step.name, 1_800_000_000.25)


def test_status_is_read_from_the_cluster_by_a_fresh_backend(make_mesh: MeshFactory) -> None:
    exp = experiment("canary")
    first = make_mesh(exp)
    first.clock = lambda: 1_800_000_123.5
    step = plan(exp)[1]
    first.apply(routing_plan(exp, step))
    first.close()
    assert make_mesh(exp).status() == RoutingState("fraud-canary", "2", 1_800_000_123.5)
    other = experiment("canary").model_copy(deep=True)
    assert make_mesh(other).status() is not None  # same name: same experiment
    assert make_mesh(experiment("abtest")).status() is None  # another experiment's routes


def test_rollback_routes_everything_to_the_baseline(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    exp = experiment("shadow")
    mesh = make_mesh(exp)
    mesh.rollback()  # nothing applied yet: routing is left alone
    assert fake_api.objects == {}
    step = plan(exp)[0]
    mesh.apply(routing_plan(exp, step))
    make_mesh(exp).rollback()  # from "another machine"
    routes = stored(fake_api, "virtualservices", "meshlab-fraud-shadow")["spec"]["http"]
    assert len(routes) == 1 and "mirror" not in routes[0]
    assert [d["destination"]["subset"] for d in routes[0]["route"]] == ["v1"]
    state = mesh.status()
    assert state is not None and state.step == "rollback"
    mesh.cleanup()
    assert fake_api.objects == {}
    mesh.cleanup()  # idempotent


def test_dry_run_validates_on_the_server_and_persists_nothing(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    exp = experiment("canary")
    mesh = make_mesh(exp, dry_run=True)
    version = fake_api.resource_version
    for step in all_steps(exp):
        mesh.apply(routing_plan(exp, step))
        assert [o["kind"] for o in mesh.last_applied] == ["DestinationRule", "VirtualService"]
        assert mesh.last_applied[1]["spec"] == manifests(exp, step)[1]["spec"]
    assert fake_api.objects == {} and fake_api.resource_version == version
    writes = [r for r in fake_api.requests if r.method != "GET"]
    assert writes and all(r.dry_run for r in writes)
    assert mesh.status() is None
    bad = manifests(exp, plan(exp)[0])
    bad[1]["spec"]["http"][0]["timeout"] = "0.0001s"  # below the CRD's 1ms CEL rule
    with pytest.raises(MeshError, match=r"422 .*spec\.http\[0\]\.timeout"):
        mesh.apply_objects(plan(exp)[0].name, bad)
    assert fake_api.objects == {}


def test_a_step_the_server_rejects_leaves_the_previous_step_in_force(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    exp = experiment("canary")
    mesh = make_mesh(exp)
    one, two = plan(exp)[:2]
    mesh.apply(routing_plan(exp, one))
    before_dr = stored(fake_api, "destinationrules", "meshlab-fraud-canary")
    before_vs = stored(fake_api, "virtualservices", "meshlab-fraud-canary")
    bad = manifests(exp, two)
    bad[1]["spec"]["http"][0]["mirrors"] = {
        "host": "x"
    }  # unknown to strict validation... wrong type
    bad[1]["spec"]["http"][0]["bogus"] = True
    with pytest.raises(MeshError, match=r"400 .*unknown field \"spec\.http\[0\]\.bogus\""):
        mesh.apply_objects(two.name, bad)
    after_dr = stored(fake_api, "destinationrules", "meshlab-fraud-canary")
    assert after_dr["metadata"]["annotations"] == before_dr["metadata"]["annotations"]
    assert after_dr["spec"] == before_dr["spec"]
    assert stored(fake_api, "virtualservices", "meshlab-fraud-canary") == before_vs
    state = mesh.status()
    assert state is not None and state.step == "1"


def test_rbac_denial_mid_step_restores_the_destination_rule(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    exp = experiment("canary")
    mesh = make_mesh(exp)
    fake_api.deny.add(("create", "virtualservices"))
    with pytest.raises(MeshError) as info:
        mesh.apply(routing_plan(exp, plan(exp)[0]))
    message = str(info.value)
    assert "403" in message and "'create' on virtualservices.networking.istio.io" in message
    assert "kubectl apply -n models -f istio_manifests/rbac/" in message
    assert fake_api.objects == {}  # the DestinationRule this step created is gone again
    fake_api.deny.clear()
    one, two = plan(exp)[:2]
    mesh.apply(routing_plan(exp, one))
    fake_api.deny.add(("patch", "virtualservices"))
    with pytest.raises(MeshError, match="'patch' on virtualservices"):
        mesh.apply(routing_plan(exp, two))
    dr = stored(fake_api, "destinationrules", "meshlab-fraud-canary")
    assert dr["metadata"]["annotations"]["meshlab.io/step"] == "1"
    fake_api.deny.add(("patch", "destinationrules"))
    with pytest.raises(MeshError, match="'patch' on destinationrules"):
        mesh.apply(routing_plan(exp, two))


def test_failed_restore_says_what_to_do(make_mesh: MeshFactory, fake_api: FakeKubeAPI) -> None:
    exp = experiment("canary")
    mesh = make_mesh(exp)
    fake_api.deny |= {("create", "virtualservices"), ("delete", "destinationrules")}
    with pytest.raises(
        MeshError, match=r"putting DestinationRule .* back also failed .*`meshlab rollback`"
    ):
        mesh.apply(routing_plan(exp, plan(exp)[0]))


def test_missing_crds_give_one_clear_error(make_mesh: MeshFactory, fake_api: FakeKubeAPI) -> None:
    fake_api.crds_installed = False
    mesh = make_mesh(experiment("canary"))
    with pytest.raises(
        MeshError, match=r"does not serve destinationrules.* install Istio's CRDs"
    ) as info:
        mesh.apply(routing_plan(mesh.experiment, plan(mesh.experiment)[0]))
    assert "\n" not in str(info.value)
    with pytest.raises(MeshError, match="does not serve virtualservices"):
        mesh.status()


def test_a_timeout_is_reported_and_the_previous_step_stays(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    exp = experiment("canary", requestTimeout="1s")  # generous: 2 shared cores
    mesh = make_mesh(exp)
    one, two = plan(exp)[:2]
    mesh.apply(routing_plan(exp, one))
    fake_api.delays[("PATCH", "virtualservices")] = (3.0, "hang")
    with pytest.raises(
        MeshError,
        match=r"did not answer apply VirtualService models/meshlab-fraud-canary within 1s",
    ):
        mesh.apply(routing_plan(exp, two))
    assert (
        stored(fake_api, "destinationrules", "meshlab-fraud-canary")["metadata"]["annotations"][
            "meshlab.io/step"
        ]
        == "1"
    )
    state = mesh.status()
    assert state is not None and state.step == "1"
    # Applied by the server but answered too late: the step is in force, not undone.
    fake_api.delays[("PATCH", "virtualservices")] = (1.6, "late")
    mesh.apply(routing_plan(exp, two))
    state = mesh.status()
    assert state is not None and state.step == "2"


def test_an_object_meshlab_did_not_create_is_never_taken_over(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    exp = experiment("canary")
    vs = manifests(exp, plan(exp)[0])[1]
    vs["metadata"]["labels"] = {"app": "fraud"}
    fake_api.put_object(vs)
    with pytest.raises(ConflictError, match=r"not managed by meshlab.*adoptVirtualService"):
        make_mesh(exp).apply(routing_plan(exp, plan(exp)[0]))
    assert fake_api.get_object("destinationrules", NS, "meshlab-fraud-canary") is None


def test_meshlab_wins_fields_another_manager_took(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    exp = experiment("canary")
    mesh = make_mesh(exp)
    one = plan(exp)[0]
    mesh.apply(routing_plan(exp, one))
    edited = stored(fake_api, "virtualservices", "meshlab-fraud-canary")
    edited["spec"]["http"][0]["timeout"] = "9s"
    fake_api.put_object(edited, manager="kubectl-edit")
    managers = {
        m["manager"]
        for m in stored(fake_api, "virtualservices", "meshlab-fraud-canary")["metadata"][
            "managedFields"
        ]
    }
    assert managers == {"meshlab", "kubectl-edit"}
    mesh.rollback()
    vs = stored(fake_api, "virtualservices", "meshlab-fraud-canary")
    assert vs["spec"] == manifests(exp, rollback())[1]["spec"]  # their 9s timeout is gone
    assert [m["manager"] for m in vs["metadata"]["managedFields"]] == ["meshlab"]


def test_secrets_never_reach_logs_or_errors(
    make_mesh: MeshFactory,
    fake_api: FakeKubeAPI,
    token: str,
    tmp_path: Path,
    kubeconfig: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []
    exp = experiment("canary", requestTimeout="1s")
    mesh = make_mesh(exp)
    step = plan(exp)[0]
    mesh.apply(routing_plan(exp, step))
    for fault in ({"deny": ("patch", "virtualservices")}, {"crds": False}, {"hang": True}):
        fake_api.deny = {fault["deny"]} if "deny" in fault else set()  # type: ignore[arg-type]
        fake_api.crds_installed = "crds" not in fault
        fake_api.delays = {("PATCH", "virtualservices"): (2.0, "hang")} if "hang" in fault else {}
        with pytest.raises(MeshError) as info:
            mesh.apply(routing_plan(exp, step))
        messages.append(str(info.value))
    wrong = tmp_path / "wrong-kubeconfig"
    config = yaml.safe_load(kubeconfig.read_text())
    other_token = "another-secret-" + token[-8:]
    config["users"][0]["user"]["token"] = other_token
    wrong.write_text(yaml.safe_dump(config))
    fake_api.delays, fake_api.crds_installed = {}, True
    stranger = KubernetesMesh.from_spec(exp, kubeconfig=str(wrong))
    try:
        with pytest.raises(MeshError, match="401") as info:
            stranger.status()
        messages.append(str(info.value))
    finally:
        stranger.close()
    with pytest.raises(MeshError, match="context 'nope'") as info:
        KubernetesMesh.from_spec(exp, kubeconfig=str(kubeconfig), context="nope")
    messages.append(str(info.value))
    out, err = capfd.readouterr()
    for secret in (token, other_token):
        for text in (*messages, caplog.text, out, err):
            assert secret not in text
    assert all("\n" not in m for m in messages)


def test_in_cluster_config_is_used_in_a_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubernetes.config import incluster_config

    token_file, ca_file = tmp_path / "token", tmp_path / "ca.crt"
    token_file.write_text("in-cluster-secret")
    ca_file.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token_file))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca_file))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    mesh = KubernetesMesh.from_spec(experiment("canary"))
    try:
        configuration = mesh.objects.api_client.configuration
        assert configuration.host == "https://10.0.0.1:443"
        assert (
            configuration.get_api_key_with_prefix("BearerToken").lower()
            == "bearer in-cluster-secret"
        )
        assert configuration.ssl_ca_cert == str(ca_file)
    finally:
        mesh.close()


def test_adopting_keeps_the_users_routes_and_restores_the_original_exactly(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    original = user_virtual_service()
    fake_api.put_object(copy.deepcopy(original))
    exp = experiment("bluegreen", adoptVirtualService="fraud-routes")
    mesh = make_mesh(exp)
    assert mesh.status() is None
    for step in plan(exp):
        mesh.apply(routing_plan(exp, step))
        vs = stored(fake_api, "virtualservices", "fraud-routes")
        ours = manifests(exp, step)[1]["spec"]["http"]
        assert vs["spec"]["http"] == [*ours, *original["spec"]["http"]]  # meshlab's first
        assert {k: v for k, v in vs["spec"].items() if k != "http"} == {
            k: v for k, v in original["spec"].items() if k != "http"
        }
        assert vs["metadata"]["labels"] == original["metadata"]["labels"]
        assert vs["metadata"]["annotations"]["team"] == "fraud"
        state = make_mesh(exp).status()
        assert state is not None and state.step == step.name
    assert fake_api.get_object("virtualservices", NS, "meshlab-fraud-bluegreen") is None
    make_mesh(exp).rollback()
    vs = stored(fake_api, "virtualservices", "fraud-routes")
    assert vs["spec"] == original["spec"]
    assert vs["metadata"]["labels"] == original["metadata"]["labels"]
    assert vs["metadata"]["annotations"] == original["metadata"]["annotations"]
    assert mesh.status() is None
    mesh.rollback()  # nothing left to restore: a no-op
    mesh.cleanup()
    assert set(fake_api.objects) == {("virtualservices", NS, "fraud-routes")}


def test_adoption_survives_concurrent_writers_within_its_retry_budget(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    fake_api.put_object(user_virtual_service())
    exp = experiment("canary", adoptVirtualService="fraud-routes", conflictRetries=2)
    mesh = make_mesh(exp)

    def someone_else_edits() -> None:
        vs = stored(fake_api, "virtualservices", "fraud-routes")
        vs["metadata"]["annotations"]["touched"] = str(
            int(vs["metadata"].get("annotations", {}).get("touched", "0")) + 1
        )
        fake_api.put_object(vs, manager="argocd")

    fake_api.hooks.append(Hook("PUT", "virtualservices", someone_else_edits, times=2))
    step = plan(exp)[0]
    mesh.apply(routing_plan(exp, step))
    puts = [r.status for r in fake_api.requests if r.method == "PUT"]
    assert puts == [409, 409, 200]
    vs = stored(fake_api, "virtualservices", "fraud-routes")
    assert vs["metadata"]["annotations"]["touched"] == "2"  # their edit kept
    assert vs["spec"]["http"][0]["name"] == "meshlab-fraud-canary"
    fake_api.hooks.append(Hook("PUT", "virtualservices", someone_else_edits, times=10))
    with pytest.raises(ConflictError, match="kept changing: 3 attempts met 409"):
        mesh.apply(routing_plan(exp, plan(exp)[1]))
    dr = stored(fake_api, "destinationrules", "meshlab-fraud-canary")
    assert dr["metadata"]["annotations"]["meshlab.io/step"] == "1"  # previous step kept


def test_restore_keeps_edits_others_made_during_the_experiment(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI, caplog: pytest.LogCaptureFixture
) -> None:
    original = user_virtual_service()
    fake_api.put_object(copy.deepcopy(original))
    exp = experiment("canary", adoptVirtualService="fraud-routes")
    mesh = make_mesh(exp)
    mesh.apply(routing_plan(exp, plan(exp)[0]))
    vs = stored(fake_api, "virtualservices", "fraud-routes")
    vs["spec"]["http"].append(
        {"name": "added-later", "route": [{"destination": {"host": "fraud-model"}}]}
    )
    fake_api.put_object(vs, manager="kubectl-edit")
    mesh.rollback()
    restored = stored(fake_api, "virtualservices", "fraud-routes")
    assert restored["spec"]["http"] == [*original["spec"]["http"], vs["spec"]["http"][-1]]
    assert restored["metadata"]["annotations"] == original["metadata"]["annotations"]
    assert "was edited during the experiment" in caplog.text


def test_adoption_errors_name_the_field(make_mesh: MeshFactory, fake_api: FakeKubeAPI) -> None:
    exp = experiment("canary", adoptVirtualService="fraud-routes")
    with pytest.raises(MeshError, match=r"spec\.target\.adoptVirtualService: .* does not exist"):
        make_mesh(exp).apply(routing_plan(exp, plan(exp)[0]))
    assert fake_api.objects == {}  # the DestinationRule was undone
    other = user_virtual_service()
    other["spec"]["hosts"] = ["payments"]
    fake_api.put_object(other)
    with pytest.raises(MeshError, match="does not route host 'fraud-model"):
        make_mesh(exp).apply(routing_plan(exp, plan(exp)[0]))
    exp2 = experiment("abtest", adoptVirtualService="fraud-routes")
    fake_api.put_object(user_virtual_service())
    make_mesh(exp).apply(routing_plan(exp, plan(exp)[0]))
    with pytest.raises(ConflictError, match="adopted by experiment 'fraud-canary'"):
        make_mesh(exp2).apply(routing_plan(exp2, plan(exp2)[0]))


def test_an_unexpected_failure_mid_step_also_restores_the_destination_rule(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = experiment("canary")
    mesh = make_mesh(exp)
    one, two = plan(exp)[:2]
    mesh.apply(routing_plan(exp, one))
    real_apply = mesh.objects.apply

    def broken(manifest: dict[str, Any], *, force: bool = True) -> dict[str, Any]:
        if manifest["kind"] == "VirtualService":
            raise RuntimeError("client bug")
        return real_apply(manifest, force=force)

    monkeypatch.setattr(mesh.objects, "apply", broken)
    with pytest.raises(RuntimeError, match="client bug"):
        mesh.apply(routing_plan(exp, two))
    dr = stored(fake_api, "destinationrules", "meshlab-fraud-canary")
    assert dr["metadata"]["annotations"]["meshlab.io/step"] == "1"


@pytest.mark.parametrize(
    "content",
    [
        "users: [{name: u, user: {token: s3cr3t-token}}]\nclusters: {{{",
        "apiVersion: v1\nkind: Config\nusers: [{name: u, user: {token: s3cr3t-token}}]\n",
        "current-context: x\nusers: [{name: u, user: {token: s3cr3t-token}}]\ncontexts: []\n",
    ],
)
def test_a_broken_kubeconfig_is_one_line_without_its_secrets(content: str, tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(content)
    with pytest.raises(
        MeshError, match=r"cannot load Kubernetes credentials from .*kubeconfig"
    ) as info:
        KubernetesMesh.from_spec(experiment("canary"), kubeconfig=str(path))
    assert "s3cr3t" not in str(info.value) and "\n" not in str(info.value)
