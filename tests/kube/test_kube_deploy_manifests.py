"""The in-cluster manifests: RBAC, the Job, the Dockerfile and distributed Locust.

Kubernetes' own schemas are not available offline, so each document is checked strictly against
the official client's models (every field must be one the model declares, with the right type);
the Role is checked against the verbs the backend declares and really uses on the fake API server.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import kubernetes.client
import yaml

from meshlab.errors import EXIT_BAD_INPUT
from meshlab.experiment.controller import EXIT, EXIT_INFRA, EXIT_INTERRUPTED
from meshlab.manifests import all_steps, routing_plan
from meshlab.mesh.kube_resources import GROUPS, VERBS
from meshlab.mesh.kubernetes import KubernetesMesh
from tests.kube.conftest import (
    REPO,
    MeshFactory,
    experiment,
    gateway_experiment,
    parent_service,
    user_http_route,
    user_virtual_service,
)
from tests.kube.fake_apiserver import FakeKubeAPI

DIRS = ("rbac", "deploy", "locust")
MODELS = {
    "ServiceAccount": "V1ServiceAccount",
    "Role": "V1Role",
    "RoleBinding": "V1RoleBinding",
    "Job": "V1Job",
    "Deployment": "V1Deployment",
    "Service": "V1Service",
}
_PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}


def documents() -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for folder in DIRS:
        for path in sorted((REPO / "istio_manifests" / folder).glob("*.yaml")):
            out[f"{folder}/{path.name}"] = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def model_errors(value: Any, type_name: str, path: str) -> list[str]:
    """Strict check of a manifest against a kubernetes client model (unknown fields are errors)."""
    if type_name.startswith("list["):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [
            e for i, v in enumerate(value) for e in model_errors(v, type_name[5:-1], f"{path}[{i}]")
        ]
    if type_name.startswith(("dict(", "dict[")):
        inner = type_name[type_name.index(",") + 2 : -1]
        if not isinstance(value, dict):
            return [f"{path}: expected a map"]
        return [e for k, v in value.items() for e in model_errors(v, inner, f"{path}[{k}]")]
    if type_name in _PRIMITIVES:
        ok = isinstance(value, _PRIMITIVES[type_name]) and not (
            type_name == "int" and isinstance(value, bool)
        )
        return [] if ok else [f"{path}: expected {type_name}, got {value!r}"]
    model = getattr(kubernetes.client, type_name)
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({type_name})"]
    by_json = {json: attr for attr, json in model.attribute_map.items()}
    errors = []
    for key, item in value.items():
        if key not in by_json:
            errors.append(f"{path}.{key}: unknown field of {type_name}")
        else:
            errors += model_errors(item, model.openapi_types[by_json[key]], f"{path}.{key}")
    return errors


def test_every_manifest_parses_and_matches_the_kubernetes_models() -> None:
    docs = documents()
    assert set(docs) == {
        "rbac/serviceaccount.yaml",
        "rbac/role.yaml",
        "rbac/rolebinding.yaml",
        "deploy/job.yaml",
        "locust/master.yaml",
        "locust/worker.yaml",
    }
    for name, items in docs.items():
        for doc in items:
            assert doc["kind"] in MODELS, f"{name}: unexpected kind {doc['kind']}"
            errors = model_errors(doc, MODELS[doc["kind"]], doc["kind"])
            assert not errors, f"{name}: {errors}"
            assert "namespace" not in doc["metadata"], f"{name}: namespace comes from kubectl -n"


def test_the_role_grants_exactly_what_the_backend_declares() -> None:
    (role,) = documents()["rbac/role.yaml"]
    granted = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}  # no resourceNames tricks, no '*'
        for resource in rule["resources"]:
            assert rule["apiGroups"] == [GROUPS[resource]], resource
            granted[resource] = sorted(rule["verbs"])
    assert granted == {resource: sorted(verbs) for resource, verbs in VERBS.items()}
    (binding,) = documents()["rbac/rolebinding.yaml"]
    (account,) = documents()["rbac/serviceaccount.yaml"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"]}]
    (job,) = documents()["deploy/job.yaml"]
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_whole_experiments_need_every_granted_verb_and_no_other(
    make_mesh: MeshFactory, fake_api: FakeKubeAPI
) -> None:
    (role,) = documents()["rbac/role.yaml"]
    grants = {
        (v, res) for rule in role["rules"] for res in rule["resources"] for v in rule["verbs"]
    }
    verbs = ("get", "list", "watch", "create", "patch", "update", "delete", "deletecollection")
    fake_api.deny = {(v, res) for v in verbs for res in VERBS} - grants  # enforce exactly the Role
    fake_api.put_object(user_virtual_service())
    fake_api.put_object(parent_service())
    fake_api.put_object(user_http_route())
    owned = experiment("canary")
    adopting = experiment("abtest", adoptVirtualService="fraud-routes")
    gateway_owned = gateway_experiment("canary")
    gateway_adopting = gateway_experiment("abtest", adoptHTTPRoute="fraud-routes")
    for exp in (owned, adopting, gateway_owned, gateway_adopting):
        mesh = make_mesh(exp)
        mesh.hold()  # as `meshlab start` does: the run's Lease first
        for step in all_steps(exp)[:2]:
            mesh.apply(routing_plan(exp, step))
            assert mesh.status() is not None
            assert mesh.heartbeat is not None and mesh.heartbeat.beat()  # renewals too
        mesh.rollback()
        mesh.cleanup()
        mesh.close()  # lets the Lease go
    assert fake_api.authorized == grants
    assert set(fake_api.objects) == {
        ("virtualservices", "models", "fraud-routes"),
        ("httproutes", "models", "fraud-routes"),
        ("services", "models", "fraud-model"),
    }


def test_job_and_dockerfile_fit_together() -> None:
    dockerfile = (REPO / "istio_manifests" / "deploy" / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--)(\S+)", dockerfile, flags=re.M):
        assert (REPO / source).exists(), f"Dockerfile copies {source}, which is not in the repo"
    assert 'ENTRYPOINT ["meshlab"]' in dockerfile and re.search(r"^USER 10001$", dockerfile, re.M)
    (job,) = documents()["deploy/job.yaml"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy needs it; each retry is a new pod
    mounted_at = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    home = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}["MESHLAB_HOME"]
    assert any(home.startswith(m + "/") for m in mounted_at), "state must go to a writable volume"


def test_the_job_reruns_a_killed_meshlab_and_never_a_decided_one() -> None:
    (job,) = documents()["deploy/job.yaml"]
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert spec["backoffLimit"] >= 1
    fail_job, ignore = spec["podFailurePolicy"]["rules"]
    assert fail_job["action"] == "FailJob" and ignore["action"] == "Ignore"
    decided = {*EXIT.values(), EXIT_INFRA, EXIT_INTERRUPTED, EXIT_BAD_INPUT} - {0}
    assert fail_job["onExitCodes"] == {
        "containerName": pod["containers"][0]["name"],
        "operator": "In",
        "values": sorted(decided),
    }
    assert 137 not in fail_job["onExitCodes"]["values"]  # SIGKILL/OOM: a new pod recovers it
    assert ignore["onPodConditions"] == [{"type": "DisruptionTarget"}]
    rollback_deadline = inspect.signature(KubernetesMesh).parameters["rollback_deadline"].default
    assert pod["terminationGracePeriodSeconds"] > rollback_deadline
    (container,) = pod["containers"]
    assert container["args"][:2] == ["canary", "start"] and "--target" in container["args"]
    mounted = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    spec_file = container["args"][container["args"].index("-f") + 1]
    assert spec_file.startswith(mounted["experiment"] + "/")


def test_locust_workers_reach_the_master_and_run_the_repo_locustfile() -> None:
    docs = documents()
    master, service = docs["locust/master.yaml"]
    (worker,) = docs["locust/worker.yaml"]
    pod_labels = master["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert master["spec"]["selector"]["matchLabels"] == pod_labels
    ports = {
        p["name"]: p["containerPort"]
        for p in master["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    (wc,) = worker["spec"]["template"]["spec"]["containers"]
    (mc,) = master["spec"]["template"]["spec"]["containers"]
    assert "--master" in mc["args"] and "--worker" in wc["args"]
    assert f"--master-host={service['metadata']['name']}" in wc["args"]
    for container, deployment in ((mc, master), (wc, worker)):
        locustfile = container["args"][container["args"].index("-f") + 1]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volume = mounts[str(Path(locustfile).parent)]
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes[volume]["configMap"]["name"] == "meshlab-locustfile"
        assert (REPO / "loadtests" / Path(locustfile).name).is_file()
    env = {e["name"]: e.get("value") for e in wc["env"]}
    assert (REPO / env["MESHLAB_PAYLOADS"].removeprefix("/app/")).is_file()  # baked into the image
    # Routing is enforced by the client's sidecar: the workers must be in the mesh.
    assert (
        worker["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "true"
    )
