"""The HTTPRoute validator (tests/support/gateway_schema.py) rejects what an API server would."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from meshlab.manifests import gateway_manifests, plan
from meshlab.spec import load_experiment
from tests.conftest import REPO
from tests.support.gateway_schema import (
    RULES,
    apply_defaults,
    crd_rules,
    gateway_crds,
    gateway_schema_errors,
    rule,
)
from tests.support.istio_schema import UnsupportedRule

EXAMPLES = REPO / "istio_manifests" / "examples" / "gateway-api"


def _route(name: str = "shadow") -> dict[str, Any]:
    exp = load_experiment(EXAMPLES / f"{name}.experiment.yaml")
    route = gateway_manifests(exp, plan(exp)[0])[-1]
    assert route["kind"] == "HTTPRoute"
    assert gateway_schema_errors(route) == []
    return copy.deepcopy(route)


def _errors(route: dict[str, Any]) -> str:
    return " | ".join(gateway_schema_errors(route))


def test_every_cel_rule_of_the_crd_is_implemented_and_no_other() -> None:
    assert crd_rules() == set(RULES)
    assert len(RULES) == 48
    with pytest.raises(UnsupportedRule, match=r"self\.size\(\) > 3"):
        rule("self.size() > 3")


def test_both_served_versions_are_known() -> None:
    served = set(gateway_crds())
    assert ("gateway.networking.k8s.io/v1", "HTTPRoute") in served
    assert ("gateway.networking.k8s.io/v1beta1", "HTTPRoute") in served
    route = _route()
    route["apiVersion"] = "gateway.networking.k8s.io/v2"
    assert "is not served" in _errors(route)


def test_structural_errors_unknown_fields_types_and_bounds() -> None:
    route = _route()
    rule_ = route["spec"]["rules"][0]
    rule_["weightz"] = 1
    rule_["filters"][0]["requestMirror"]["percent"] = 101
    rule_["backendRefs"][0]["port"] = "8080"
    errors = _errors(route)
    assert "spec.rules[0].weightz: unknown field" in errors
    assert "percent: 101 is above the maximum 100" in errors
    assert "port: expected integer" in errors


def test_patterns_min_lengths_and_list_keys_are_checked() -> None:
    route = _route("abtest")
    match = route["spec"]["rules"][0]["matches"][0]
    match["headers"][0]["name"] = "bad header"
    match["headers"].append(dict(match["headers"][0]))
    route["spec"]["rules"][0]["name"] = ""
    errors = _errors(route)
    assert "does not match" in errors
    assert "duplicate map keys ['name']" in errors
    assert "shorter than 1 characters" in errors


def test_mirror_percent_and_fraction_are_exclusive_and_fraction_at_most_one() -> None:
    route = _route()
    mirror = route["spec"]["rules"][0]["filters"][0]["requestMirror"]
    mirror["percent"] = 10
    mirror["fraction"] = {"numerator": 3, "denominator": 2}
    errors = _errors(route)
    assert "Only one of percent or fraction may be specified" in errors
    assert "numerator must be less than or equal to denominator" in errors


def test_defaults_are_applied_before_the_cel_rules() -> None:
    route = _route()
    backend = route["spec"]["rules"][0]["backendRefs"][0]
    del backend["kind"], backend["group"], backend["port"]  # kind defaults to Service
    assert "Must have port for Service reference" in _errors(route)
    defaulted = apply_defaults(
        gateway_crds()[("gateway.networking.k8s.io/v1", "HTTPRoute")]["schema"]["properties"][
            "spec"
        ],
        {"rules": [{"backendRefs": [{"name": "x", "port": 1}]}]},
    )
    assert defaulted["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert defaulted["rules"][0]["backendRefs"][0]["weight"] == 1


def test_filter_type_must_match_its_field_and_not_repeat() -> None:
    route = _route()
    backend = route["spec"]["rules"][0]["backendRefs"][0]
    backend["filters"].append(copy.deepcopy(backend["filters"][0]))
    route["spec"]["rules"][0]["filters"][0]["type"] = "ResponseHeaderModifier"
    errors = _errors(route)
    assert "ResponseHeaderModifier filter cannot be repeated" in errors
    assert "filter.requestMirror must be nil if the filter.type is not RequestMirror" in errors
    assert "filter.responseHeaderModifier must be specified" in errors


def test_path_values_follow_the_path_rules() -> None:
    route = _route("abtest")
    match = route["spec"]["rules"][1]["matches"][0]
    for value, message in [
        ("v2/models", "must be an absolute path"),
        ("/a//b", "must not contain '//'"),
        ("/a/..", "must not end with '/..'"),
        ("/a b", "must only contain valid characters"),
    ]:
        match["path"] = {"type": "PathPrefix", "value": value}
        assert message in _errors(route), value
    match["path"] = {"type": "RegularExpression", "value": "/a b//.*"}
    assert _errors(route) == ""


def test_timeouts_and_redirects() -> None:
    route = _route("canary")
    rule_ = route["spec"]["rules"][0]
    rule_["timeouts"] = {"request": "1s", "backendRequest": "2s"}
    assert "backendRequest timeout cannot be longer than request timeout" in _errors(route)
    rule_["timeouts"] = {"request": "0s", "backendRequest": "2s"}
    assert _errors(route) == ""
    rule_["timeouts"] = {"request": "1.5s"}
    assert "does not match" in _errors(route)
    rule_.pop("timeouts")
    rule_["filters"] = [{"type": "RequestRedirect", "requestRedirect": {"statusCode": 301}}]
    assert "RequestRedirect filter must not be used together with backendRefs" in _errors(route)


def test_parent_refs_to_the_same_parent_need_distinct_section_names() -> None:
    route = _route()
    parent = route["spec"]["parentRefs"][0]
    route["spec"]["parentRefs"] = [parent, dict(parent)]
    assert "sectionName must be unique" in _errors(route)
    route["spec"]["parentRefs"] = [parent, {**parent, "sectionName": "http"}]
    assert "sectionName must be specified" in _errors(route)
    route["spec"]["parentRefs"] = [
        {**parent, "sectionName": "http"},
        {**parent, "sectionName": "grpc"},
    ]
    assert _errors(route) == ""


def test_total_matches_are_bounded() -> None:
    route = _route("abtest")
    match = route["spec"]["rules"][0]["matches"][0]
    for rule_ in route["spec"]["rules"]:
        rule_["matches"] = [copy.deepcopy(match) for _ in range(50)]
    assert "total number of matches across all rules" in _errors(route)
