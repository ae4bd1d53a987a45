"""The strict Istio schema validator (tests/support/istio_schema.py) catches what a server would."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kube.conftest import EXAMPLES
from tests.support import istio_schema
from tests.support.istio_schema import (
    UnsupportedRule,
    go_duration_seconds,
    istio_schema_errors,
    schema_errors,
    validate_istio,
)


def rendered() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(EXAMPLES.glob("*/*.yaml")):
        if path.name.endswith(".experiment.yaml"):
            continue  # a spec (examples/gateway-api/*.experiment.yaml), not a rendered manifest
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_every_rendered_example_is_valid() -> None:
    docs = rendered()
    assert len(docs) >= 30
    for doc in docs:
        validate_istio(doc)


def test_violations_are_reported_with_their_path() -> None:
    vs = next(
        d for d in rendered() if d["kind"] == "VirtualService" and "mirror" in d["spec"]["http"][-1]
    )
    bad = copy.deepcopy(vs)
    route = bad["spec"]["http"][-1]
    route["mirrors"] = route.pop("mirror")  # v1 spells it mirrors only as a list
    route["route"][0]["weight"] = "90"
    route["timeout"] = "0.5ms"
    route["retries"] = {"attempts": 2, "perTryTimeout": "soon"}
    route["match"] = [{"uri": {"exact": "/a", "prefix": "/"}}]
    bad["spec"]["hostz"] = []
    bad["metadata"]["labels"] = {"bad key!": "x"}
    bad["extra"] = 1
    errors = istio_schema_errors(bad)
    expected = [
        "extra: unknown field",
        "metadata.labels[bad key!]: not a qualified name",
        "spec.http[0].mirrors: expected array, got object",
        "spec.http[0].route[0].weight: expected integer, got string",
        "spec.http[0].timeout: must be a valid duration greater than 1ms",
        "spec.http[0].retries.perTryTimeout: must be a valid duration greater than 1ms",
        "spec.http[0].match[0].uri: must match exactly one of the allowed field combinations",
        "spec.hostz: unknown field",
    ]
    for fragment in expected:
        assert any(e.startswith(fragment) for e in errors), (fragment, errors)
    with pytest.raises(AssertionError, match=r"VirtualService .* violates its CRD schema"):
        validate_istio(bad)


def test_destination_rule_rules_and_unknown_kinds() -> None:
    dr = next(d for d in rendered() if d["kind"] == "DestinationRule")
    bad = copy.deepcopy(dr)
    bad["spec"]["workloadSelector"] = {"matchLabels": {"": "x", "a*": "b", "c": "*"}}
    bad["spec"]["trafficPolicy"] = {"connectionPool": {"tcp": {"connectTimeout": "1us"}}}
    errors = istio_schema_errors(bad)
    selector = [e for e in errors if e.startswith("spec.workloadSelector.matchLabels")]
    assert len(selector) == 3, errors  # empty key, wildcard key, wildcard value: three CEL rules
    assert any("connectTimeout" in e for e in errors), errors
    assert istio_schema_errors({**dr, "apiVersion": "networking.istio.io/v2"})[0].startswith(
        "apiVersion/kind"
    )
    assert istio_schema_errors({**dr, "apiVersion": "networking.istio.io/v1beta1"}) == []


def test_an_unknown_cel_rule_fails_loudly() -> None:
    schema = {
        "type": "string",
        "x-kubernetes-validations": [{"rule": "self.size() > 3", "message": "m"}],
    }
    with pytest.raises(UnsupportedRule, match=r"self\.size\(\) > 3"):
        schema_errors(schema, "abcd", "spec.x")
    assert schema_errors(schema, None, "spec.x") == ["spec.x: must not be null"]


def test_go_durations() -> None:
    assert go_duration_seconds("1h2m3.5s") == pytest.approx(3723.5)
    assert go_duration_seconds("100ms") == pytest.approx(0.1)
    assert go_duration_seconds("0") == 0.0
    for bad in ("1", "1d", "s", ""):
        with pytest.raises(ValueError):
            go_duration_seconds(bad)


def test_the_crd_file_can_be_overridden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    only_vs = [
        d
        for d in yaml.load_all(istio_schema.crd_file().read_text(), Loader=yaml.CSafeLoader)
        if d and d["spec"]["names"]["kind"] == "VirtualService"
    ]
    path = tmp_path / "crds.yaml"
    path.write_text(yaml.safe_dump_all(only_vs))
    monkeypatch.setenv("MESHLAB_ISTIO_CRDS", str(path))
    assert istio_schema.crd_file() == path
    dr = next(d for d in rendered() if d["kind"] == "DestinationRule")
    assert "not served" in istio_schema_errors(dr)[0]
