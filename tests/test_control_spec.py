"""spec.control (issue 13): validation, the rendered control subset (CRD-schema valid in both
routing APIs), and the control Deployment derived from the baseline's."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshlab.errors import ConfigError
from meshlab.manifests import all_steps, render_step
from meshlab.manifests.control import ARM_LABEL, control_deployment
from meshlab.spec import Experiment, parse_experiment
from tests.conftest import EXAMPLE
from tests.support.gateway_schema import gateway_schema_errors
from tests.support.istio_schema import istio_schema_errors

REPO = Path(__file__).resolve().parents[1]


def experiment(**spec: Any) -> Experiment:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["spec"].update(spec)
    return parse_experiment(data)


def test_control_defaults_derive_subset_and_labels_from_the_baseline() -> None:
    exp = experiment(control={})
    version = exp.spec.control_version
    base = exp.spec.baseline.labels
    assert version is not None and version.subset == "control"
    assert version.labels == {k: f"{v}-control" for k, v in base.items()}
    assert experiment().spec.control_version is None


@pytest.mark.parametrize(
    ("control", "path", "text"),
    [
        ({"subset": "SUBSET"}, "spec.control.subset", ""),
        ({"url": "ftp://x"}, "spec.control.url", "http URL with a port"),
        ("BASELINE_SUBSET", "spec.control.subset", "baseline's subset"),
        ("BASELINE_LABELS", "spec.control.labels", "would also select the control's pods"),
    ],
)
def test_bad_control_is_a_one_line_error_naming_the_field(
    control: Any, path: str, text: str
) -> None:
    from meshlab.errors import SpecError

    base = experiment().spec.baseline
    if control == "BASELINE_SUBSET":
        control = {"subset": base.subset}
    elif control == "BASELINE_LABELS":
        control = {"labels": {**base.labels, "extra": "x"}}
    elif control == {"subset": "SUBSET"}:
        control = {"subset": "Not_A_Label"}
    with pytest.raises(SpecError) as info:
        experiment(control=control)
    message = str(info.value)
    assert path in message and text in message and "\n" not in message.strip()
    assert "(got {" not in message and len(message) < 300, message  # not the whole spec


def test_control_only_for_canary_and_shadow() -> None:
    from meshlab.errors import SpecError

    with pytest.raises(SpecError, match="canary or shadow"):
        experiment(control={}, strategy="bluegreen")


@pytest.mark.parametrize("routing", ["istio", "gateway-api"])
def test_render_emits_the_control_subset_at_the_candidate_share(routing: str) -> None:
    exp = experiment(control={})
    check = istio_schema_errors if routing == "istio" else gateway_schema_errors
    seen_weights = []
    for step in all_steps(exp):
        docs = render_step(exp, step, routing)
        for doc in docs:
            if doc["kind"] != "Service":  # the Gateway API's per-version core Services
                assert check(doc) == [], (step.name, doc["kind"])
        text = yaml.safe_dump(docs)
        assert "control" in text
        if routing == "istio" and step.kind == "canary":
            vs = docs[-1]
            route = vs["spec"]["http"][-1]["route"]
            weights = {r["destination"]["subset"]: r["weight"] for r in route}
            seen_weights.append(weights)
            assert weights.get("control", 0) == min(
                step.candidate_weight, 100 - step.candidate_weight
            )
    if routing == "istio":
        assert seen_weights, "the example has canary steps"


BASELINE_DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {
        "name": "model-v1",
        "namespace": "models",
        "uid": "1234",
        "resourceVersion": "99",
        "annotations": {"deployment.kubernetes.io/revision": "3", "team": "ml"},
        "labels": {"app": "model"},
    },
    "spec": {
        "replicas": 6,
        "selector": {"matchLabels": {"app": "model", "version": "v1"}},
        "template": {
            "metadata": {"labels": {"app": "model", "version": "v1"}},
            "spec": {"containers": [{"name": "m", "image": "registry/model:1.0"}]},
        },
    },
    "status": {"replicas": 6},
}


def test_control_deployment_keeps_the_pod_template_and_moves_the_labels() -> None:
    exp = experiment(control={})
    before = copy.deepcopy(BASELINE_DEPLOYMENT)
    out = control_deployment(BASELINE_DEPLOYMENT, exp, replicas=2)
    assert before == BASELINE_DEPLOYMENT  # pure
    assert out["metadata"]["name"] == "model-v1-control" and "status" not in out
    assert "uid" not in out["metadata"] and "resourceVersion" not in out["metadata"]
    assert out["metadata"]["annotations"] == {"team": "ml", "meshlab.io/derived-from": "model-v1"}
    assert out["spec"]["replicas"] == 2
    pod = out["spec"]["template"]
    assert pod["spec"] == BASELINE_DEPLOYMENT["spec"]["template"]["spec"]
    labels = pod["metadata"]["labels"]
    control = exp.spec.control_version
    assert control is not None
    assert labels == {"app": "model", **control.labels, ARM_LABEL: "control"}
    selector = out["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items() and selector[ARM_LABEL] == "control"
    # the baseline's subset must not select the control's pods
    assert not exp.spec.baseline.labels.items() <= labels.items()
    assert control.labels.items() <= labels.items()


def test_control_deployment_refuses_what_it_cannot_derive() -> None:
    with pytest.raises(ConfigError, match=r"spec\.control"):
        control_deployment(BASELINE_DEPLOYMENT, experiment())
    wrong = copy.deepcopy(BASELINE_DEPLOYMENT)
    wrong["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(ConfigError, match="subset labels"):
        control_deployment(wrong, experiment(control={}))
    with pytest.raises(ConfigError, match="apps/v1 Deployment"):
        control_deployment({"kind": "Service"}, experiment(control={}))


def test_what_a_run_would_refuse_with_a_control_is_refused_by_validate() -> None:
    """Checked in the spec, so `meshlab validate` says it before a run starts anything."""
    from meshlab.errors import SpecError

    workloads = {"baseline": "fraud-v1", "candidate": "fraud-v2"}
    for templates in ("istio-workload", "istio-waypoint-workload"):
        with pytest.raises(SpecError, match=r"queries\.workloads: templates " + templates):
            experiment(metrics={"source": "prometheus", "prometheus": {"queries": {"templates": templates}}})  # fmt: skip
        prometheus = {"queries": {"templates": templates, "workloads": workloads}}
        experiment(metrics={"source": "prometheus", "prometheus": prometheus})  # fine without
        with pytest.raises(SpecError, match=r"spec\.metrics\.prometheus\.queries\.workloads\.control"):  # fmt: skip
            experiment(control={}, metrics={"source": "prometheus", "prometheus": prometheus})
        named = {"queries": {"templates": templates, "workloads": {**workloads, "control": "c"}}}
        experiment(control={}, metrics={"source": "prometheus", "prometheus": named})
    collector = {"url": "http://c.models.svc:8080", "inferenceServices": workloads}
    experiment(metrics={"collector": collector})
    with pytest.raises(SpecError, match=r"collector\.inferenceServices\.control"):
        experiment(control={}, metrics={"collector": collector})
    both = {**collector, "inferenceServices": {**workloads, "control": "fraud-v1-control"}}
    experiment(control={}, metrics={"collector": both})
