"""The shipped ``istio_manifests/serve`` YAMLs: schema-valid, wired to the service, right semantics.

AnalysisTemplate, Rollout and Canary validate strictly against the vendored CRD schemas
(``istio_manifests/crds``); the Deployment's arguments are accepted by ``meshlab serve`` itself;
and the AnalysisTemplate's conditions and limits, run through the Argo driver's emulation, abort at
meshlab's first abort, succeed at its first promote and keep measuring while inconclusive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from meshlab.cli import app
from tests.serve.argo_driver import AnalysisRun, Measurement, measurement_phase
from tests.serve.flagger_driver import CanaryRun
from tests.support.istio_schema import schema_errors

REPO = Path(__file__).resolve().parents[2]
SERVE = REPO / "istio_manifests" / "serve"
CRDS = REPO / "istio_manifests" / "crds"


def _on_create(schema: Any) -> Any:
    """``schema`` without transition rules (``oldSelf``): the API server skips them on create."""
    if isinstance(schema, list):
        return [_on_create(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _on_create(value) for key, value in schema.items()}
    rules = [r for r in schema.get("x-kubernetes-validations", []) if "oldSelf" not in r["rule"]]
    if "x-kubernetes-validations" in schema:
        out["x-kubernetes-validations"] = rules
    return out


def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    files = [
        CRDS / "argo-rollouts" / "analysis-template-crd.yaml",
        CRDS / "argo-rollouts" / "rollout-crd.yaml",
        CRDS / "flagger" / "crd.yaml",
    ]
    for file in files:
        for crd in yaml.safe_load_all(file.read_text()):
            if not crd:
                continue
            for version in crd["spec"]["versions"]:
                api = f"{crd['spec']['group']}/{version['name']}"
                schema = _on_create(version["schema"]["openAPIV3Schema"])
                out[(api, crd["spec"]["names"]["kind"])] = schema
    return out


def _docs() -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{file.name}[{i}]", doc)
        for file in sorted(SERVE.glob("*.yaml"))
        for i, doc in enumerate(yaml.safe_load_all(file.read_text()))
        if doc
    ]


def test_every_custom_resource_validates_against_its_vendored_crd() -> None:
    schemas = _crd_schemas()
    kinds = []
    for where, doc in _docs():
        key = (doc["apiVersion"], doc["kind"])
        if doc["apiVersion"].startswith(("argoproj.io/", "flagger.app/")):
            assert key in schemas, f"{where}: no vendored CRD for {key}"
            schema = schemas[key]
            errors = []
            for field in ("spec",):
                errors += schema_errors(schema["properties"][field], doc[field], field)
            assert errors == [], f"{where}: {errors}"
            kinds.append(doc["kind"])
    assert sorted(kinds) == ["AnalysisTemplate", "Canary", "Rollout"]


def test_schema_validation_catches_a_wrong_field() -> None:
    schemas = _crd_schemas()
    template = yaml.safe_load((SERVE / "argo-analysistemplate.yaml").read_text())
    template["spec"]["metrics"][0]["succesCondition"] = "typo"
    schema = schemas[("argoproj.io/v1alpha1", "AnalysisTemplate")]
    assert schema_errors(schema["properties"]["spec"], template["spec"], "spec")


def test_the_deployment_runs_a_command_meshlab_serve_accepts() -> None:
    docs = dict(_docs())
    deployment = next(d for d in docs.values() if d["kind"] == "Deployment")
    service = next(d for d in docs.values() if d["kind"] == "Service")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    command = typer.main.get_command(app)
    ctx = command.make_context("meshlab", list(container["args"]), resilient_parsing=False)
    sub = command.get_command(ctx, container["args"][0])  # type: ignore[attr-defined]
    assert sub is not None
    params = sub.make_context("serve", list(container["args"][1:])).params
    assert params["port"] == container["ports"][0]["containerPort"] == 8080
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[str(params["state_dir"])] == "state"
    assert mounts[str(params["analysis"])] == "analysis"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    # The analysis ConfigMap's profiles parse as meshlab analysis sections.
    from meshlab.serve.config import profiles_from_data

    configmap = next(d for d in docs.values() if d["kind"] == "ConfigMap")
    assert set(profiles_from_data(configmap, "configmap")) == {"default", "strict"}


def _emulate(verdicts: list[str]) -> tuple[str, int]:
    template = yaml.safe_load((SERVE / "argo-analysistemplate.yaml").read_text())
    metric = template["spec"]["metrics"][0]
    run = AnalysisRun(metric, {}, "http://unused")
    for i, verdict in enumerate(verdicts, start=1):
        run.measurements.append(
            Measurement(measurement_phase(verdict, metric), verdict, {}, 200, 0)
        )
        phase = run.phase()
        if phase != "Running":
            return phase, i
    return run.phase(), len(verdicts)


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        (["inconclusive"] * 7 + ["abort"], ("Failed", 8)),
        (["inconclusive"] * 9 + ["promote"], ("Successful", 10)),
        (["inconclusive"] * 30, ("Running", 30)),
        (["inconclusive"] * 120, ("Inconclusive", 120)),  # count reached: pause, never fail
    ],
)
def test_the_analysis_template_follows_meshlab_verdicts(
    verdicts: list[str], expected: tuple[str, int]
) -> None:
    assert _emulate(verdicts) == expected


def test_argo_measurement_errors_are_not_failures() -> None:
    template = yaml.safe_load((SERVE / "argo-analysistemplate.yaml").read_text())
    run = AnalysisRun(template["spec"]["metrics"][0], {}, "http://unused")
    for _ in range(10):
        run.measurements.append(Measurement("Error", None, None, 503, 0))
        assert run.phase() == "Running"
    run.measurements.append(Measurement("Error", None, None, 503, 0))
    assert run.phase() == "Error"  # consecutiveErrorLimit 10 exceeded: not "Failed"


def test_the_canary_calls_every_meshlab_hook() -> None:
    canary = yaml.safe_load((SERVE / "flagger-canary.yaml").read_text())
    hooks = {h["type"]: h["url"] for h in canary["spec"]["analysis"]["webhooks"]}
    assert set(hooks) == {"rollback", "rollout", "confirm-traffic-increase", "confirm-promotion"}
    for kind, url in hooks.items():
        assert url.endswith(f"/flagger/v1/{kind}")
    run = CanaryRun(canary, "http://unused", "abc")
    assert run.analysis["threshold"] == 5
