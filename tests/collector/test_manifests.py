"""What a user applies for the collector: builders, schemas, and the committed examples.

Istio objects are checked strictly against the vendored Istio CRD schemas; the Service and the
NetworkPolicy against the official Kubernetes client's models; the logger block against the fields
of KServe's ``LoggerSpec`` (``pkg/apis/serving/v1beta1/component.go``: url, mode, metadataHeaders,
metadataAnnotations), whose CRD is not vendored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshlab.errors import ConfigError
from meshlab.manifests.kserve import (
    collector_files,
    collector_manifests,
    collector_url,
    logger_patches_from_spec,
    logger_spec,
)
from meshlab.spec.metrics import CollectorSpec
from tests.kube.test_kube_deploy_manifests import model_errors
from tests.support.istio_schema import validate_istio

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "istio_manifests" / "collector"
KSERVE_LOGGER_FIELDS = {"url", "mode", "metadataHeaders", "metadataAnnotations"}
SPEC = CollectorSpec.model_validate(
    {
        "inferenceServices": {"baseline": "fraud-v1", "candidate": "fraud-v2"},
        "modelServiceAccounts": ["fraud-sa", "default"],
    }
)


def by_kind(documents: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in documents:
        out.setdefault(doc["kind"], []).append(doc)
    return out


def test_everything_to_apply_validates_against_its_schema() -> None:
    documents = by_kind(collector_manifests(SPEC, "models"))
    assert sorted(documents) == [
        "AuthorizationPolicy",
        "InferenceService",
        "NetworkPolicy",
        "PeerAuthentication",
        "Service",
        "Sidecar",
    ]
    for kind in ("Sidecar", "PeerAuthentication", "AuthorizationPolicy"):
        validate_istio(documents[kind][0])
    for kind, model in (("Service", "V1Service"), ("NetworkPolicy", "V1NetworkPolicy")):
        assert model_errors(documents[kind][0], model, kind) == []
    for patch in documents["InferenceService"]:
        assert set(patch["spec"]["predictor"]["logger"]) <= KSERVE_LOGGER_FIELDS


def test_the_mesh_admits_only_the_model_pods_and_forwards_to_loopback() -> None:
    documents = by_kind(collector_manifests(SPEC, "models"))
    sidecar = documents["Sidecar"][0]["spec"]
    assert sidecar["ingress"][0]["defaultEndpoint"] == "127.0.0.1:8080"  # where the collector binds
    assert documents["PeerAuthentication"][0]["spec"]["mtls"] == {"mode": "STRICT"}
    rule = documents["AuthorizationPolicy"][0]["spec"]["rules"][0]
    assert rule["from"][0]["source"]["principals"] == [
        "*/ns/models/sa/fraud-sa",
        "*/ns/models/sa/default",
    ]
    assert rule["to"][0]["operation"]["methods"] == ["POST"]
    policy = documents["NetworkPolicy"][0]["spec"]
    assert policy["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]["values"] == [
        "fraud-v1",
        "fraud-v2",
    ]
    service = documents["Service"][0]["spec"]
    assert service["ports"][0]["name"].startswith("http-")  # Istio protocol selection
    assert service["selector"] == policy["podSelector"]["matchLabels"]


def test_logger_patches_point_each_version_at_its_arm() -> None:
    urls = [
        p["spec"]["predictor"]["logger"]["url"] for p in logger_patches_from_spec(SPEC, "models")
    ]
    assert urls == [
        "http://meshlab-collector.models.svc:8080/events/baseline",
        "http://meshlab-collector.models.svc:8080/events/candidate",
    ]
    tls = SPEC.model_copy(update={"tls": {"certFile": "c", "keyFile": "k"}})
    assert collector_url(tls, "models").startswith("https://")


def test_a_secret_in_the_logger_url_is_refused() -> None:
    """KServe's agent logs each event's URL: a token in its userinfo would leak."""
    with pytest.raises(ConfigError, match="remove the user:password"):
        logger_spec("http://meshlab:s3cret@meshlab-collector.models.svc:8080", "baseline")


def test_the_committed_examples_match_the_builders() -> None:
    """`python istio_manifests/collector/regenerate.py` rewrites them."""
    from istio_manifests.collector.regenerate import render

    specs = sorted(EXAMPLES.glob("*.experiment.yaml"))
    assert specs
    for spec_file in specs:
        folder = EXAMPLES / spec_file.name.removesuffix(".experiment.yaml")
        for name, text in render(spec_file).items():
            assert (folder / name).read_text() == text, f"{folder / name} drifted; regenerate"
            for doc in yaml.safe_load_all(text):
                assert doc["metadata"]["namespace"] == "models"


def test_the_schema_check_is_not_vacuous() -> None:
    documents = by_kind(collector_manifests(SPEC, "models"))
    policy = documents["AuthorizationPolicy"][0]
    both = {**policy, "spec": {**policy["spec"], "targetRef": {"kind": "Service", "name": "x"}}}
    with pytest.raises(AssertionError):
        validate_istio(both)
    peer = documents["PeerAuthentication"][0]
    with pytest.raises(AssertionError):
        validate_istio({**peer, "spec": {"mtls": {"mode": "STRICTER"}}})
    service = documents["Service"][0]
    assert model_errors({**service, "spec": {"portz": []}}, "V1Service", "Service")


def test_render_files_follow_what_the_spec_names() -> None:
    """The `meshlab render --all` hook: nothing without a collector, no patches without ISVCs."""
    assert collector_files(None, "models") == {}
    plain = collector_files(CollectorSpec(), "models")
    assert list(plain) == ["collector.yaml"]
    assert [d["kind"] for d in plain["collector.yaml"]] == [
        "Service",
        "Sidecar",
        "PeerAuthentication",
        "AuthorizationPolicy",
    ]
    full = collector_files(SPEC, "models")
    assert full["collector.yaml"] + full["inferenceservice-logger-patches.yaml"] == (
        collector_manifests(SPEC, "models")
    )


def test_render_all_writes_the_collectors_files_beside_the_steps(tmp_path: Path) -> None:
    """`meshlab render --all -o DIR` is what the cluster shadow refusal tells a user to apply."""
    from meshlab.cli import main

    spec_file = EXAMPLES / "shadow-kserve.experiment.yaml"
    out = tmp_path / "out"
    assert main(["render", "-f", str(spec_file), "--all", "-o", str(out)]) == 0
    committed = EXAMPLES / "shadow-kserve"
    for name in ("collector.yaml", "inferenceservice-logger-patches.yaml"):
        written = list(yaml.safe_load_all((out / name).read_text()))
        assert written == list(yaml.safe_load_all((committed / name).read_text()))
