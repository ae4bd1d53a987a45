"""The pure VirtualService/DestinationRule -> Envoy translation, checked against istiod's rules."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from meshlab.errors import MeshError
from meshlab.manifests import (
    ARM_HEADER,
    all_steps,
    manifests,
    plan,
    promoted,
    render_step,
    rollback,
)
from meshlab.mesh.envoy_bootstrap import inbound_bootstrap, outbound_bootstrap
from meshlab.mesh.envoy_config import (
    cluster_name,
    discovery_response,
    find_manifest,
    referenced_clusters,
    route_configuration,
    route_match,
)
from meshlab.mesh.envoy_httproute import (
    duration_seconds,
    literal_prefix,
    step_route_configuration,
    step_subsets,
)
from meshlab.mesh.envoy_httproute import route_match as httproute_match
from meshlab.spec import Experiment, Shadow, load_experiment
from tests.conftest import EXAMPLE, REPO
from tests.support.envoy_routes import same_decisions

V1 = "outbound|8080|v1|fraud-model"
V2 = "outbound|8080|v2|fraud-model"


def _experiment(strategy: str = "canary") -> Experiment:
    exp = load_experiment(EXAMPLE)
    return exp.model_copy(update={"spec": exp.spec.model_copy(update={"strategy": strategy})})


def _translate(exp: Experiment, step: Any) -> dict[str, Any]:
    docs = manifests(exp, step)
    return route_configuration(
        find_manifest(docs, "VirtualService"), find_manifest(docs, "DestinationRule")
    )


def _routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    (vhost,) = config["virtual_hosts"]
    routes: list[dict[str, Any]] = vhost["routes"]
    return routes


def _arm_header(entry: dict[str, Any]) -> str:
    (header,) = [h for h in entry["response_headers_to_add"] if h["header"]["key"] == ARM_HEADER]
    assert header["append_action"] == "OVERWRITE_IF_EXISTS_OR_ADD"
    return str(header["header"]["value"])


def test_cluster_names_follow_istiod() -> None:
    assert cluster_name("fraud-model", 8080, "v1") == V1
    assert cluster_name("fraud-model", 8080, None) == "outbound|8080||fraud-model"


def test_canary_step_is_weighted_clusters_with_per_destination_arm_headers() -> None:
    exp = _experiment()
    step = plan(exp)[1]  # 10%
    (route,) = _routes(_translate(exp, step))
    assert route["name"] == "meshlab-fraud-v2"
    assert route["match"] == {"prefix": "/"}
    clusters = route["route"]["weighted_clusters"]["clusters"]
    assert [(c["name"], c["weight"]) for c in clusters] == [(V1, 90), (V2, 10)]
    assert [_arm_header(c) for c in clusters] == ["baseline", "candidate"]
    assert "total_weight" not in route["route"]["weighted_clusters"]


def test_full_weight_drops_the_zero_destination_and_uses_a_plain_cluster() -> None:
    exp = _experiment()
    step = plan(exp)[-1]  # 100%
    assert step.candidate_weight == 100
    (route,) = _routes(_translate(exp, step))
    assert route["route"]["cluster"] == V2
    assert "weighted_clusters" not in route["route"]
    assert _arm_header(route) == "candidate"


@pytest.mark.parametrize(
    ("step", "cluster", "arm"), [(promoted(), V2, "candidate"), (rollback(), V1, "baseline")]
)
def test_end_states_route_everything_to_one_subset(step: Any, cluster: str, arm: str) -> None:
    (route,) = _routes(_translate(_experiment(), step))
    assert route["route"]["cluster"] == cluster
    assert _arm_header(route) == arm
    assert "request_mirror_policies" not in route["route"]


def test_shadow_mirror_fraction_is_percent_times_ten_thousand_per_million() -> None:
    exp = _experiment("shadow")
    (route,) = _routes(_translate(exp, plan(exp)[0]))
    assert route["route"]["cluster"] == V1
    (policy,) = route["route"]["request_mirror_policies"]
    assert policy["cluster"] == V2
    assert policy["runtime_fraction"]["default_value"] == {
        "numerator": 1_000_000,
        "denominator": "MILLION",
    }
    assert policy["trace_sampled"] is False


def test_fractional_mirror_percentage() -> None:
    exp = _experiment("shadow")
    vs = copy.deepcopy(find_manifest(manifests(exp, plan(exp)[0]), "VirtualService"))
    vs["spec"]["http"][0]["mirrorPercentage"] = {"value": 12.5}
    dr = find_manifest(manifests(exp, plan(exp)[0]), "DestinationRule")
    (route,) = _routes(route_configuration(vs, dr))
    fraction = route["route"]["request_mirror_policies"][0]["runtime_fraction"]["default_value"]
    assert fraction["numerator"] == 125_000


def test_abtest_matched_route_comes_first_then_the_default() -> None:
    exp = _experiment("abtest")
    matched, default = _routes(_translate(exp, plan(exp)[0]))
    assert matched["name"] == "meshlab-fraud-v2-match-0"
    assert matched["match"] == {
        "prefix": "/",
        "headers": [{"name": "x-user-group", "string_match": {"exact": "beta"}}],
    }
    assert matched["route"]["cluster"] == V2
    assert default["match"] == {"prefix": "/"}
    assert default["route"]["cluster"] == V1


def test_bluegreen_preview_header_then_switch() -> None:
    exp = _experiment("bluegreen")
    preview, switch = plan(exp)
    matched, default = _routes(_translate(exp, preview))
    assert matched["match"]["headers"][0]["name"] == "x-meshlab-preview"
    assert matched["route"]["cluster"] == V2 and default["route"]["cluster"] == V1
    (only,) = _routes(_translate(exp, switch))
    assert only["route"]["cluster"] == V2


def test_uri_and_header_match_kinds() -> None:
    assert route_match({"uri": {"exact": "/a"}}, "m") == {"path": "/a"}
    assert route_match({"uri": {"prefix": "/v2/"}}, "m") == {"prefix": "/v2/"}
    assert route_match({"uri": {"regex": "/v[12]/.*"}}, "m") == {
        "safe_regex": {"regex": "/v[12]/.*"}
    }
    match = route_match(
        {
            "headers": {"a": {"prefix": "x"}, "b": {"regex": "y+"}},
            "withoutHeaders": {"c": {"exact": "z"}},
        },
        "m",
    )
    assert match["headers"] == [
        {"name": "a", "string_match": {"prefix": "x"}},
        {"name": "b", "string_match": {"safe_regex": {"regex": "y+"}}},
        {"name": "c", "string_match": {"exact": "z"}, "invert_match": True},
    ]


def test_several_matches_are_ored_into_several_routes_in_order() -> None:
    exp = _experiment("abtest")
    docs = manifests(exp, plan(exp)[0])
    vs = copy.deepcopy(find_manifest(docs, "VirtualService"))
    vs["spec"]["http"][0]["match"].append({"uri": {"prefix": "/beta"}})
    routes = _routes(route_configuration(vs, find_manifest(docs, "DestinationRule")))
    assert [r["match"].get("headers", [{}])[0].get("name") for r in routes] == [
        "x-user-group",
        None,
        None,
    ]
    assert routes[1]["match"] == {"prefix": "/beta"}
    assert routes[0]["route"] == routes[1]["route"]


def test_timeouts_and_retries() -> None:
    exp = _experiment()
    docs = manifests(exp, plan(exp)[0])
    dr = find_manifest(docs, "DestinationRule")
    vs = copy.deepcopy(find_manifest(docs, "VirtualService"))
    (route,) = _routes(route_configuration(vs, dr))
    assert route["route"]["timeout"] == "0s"  # istiod disables Envoy's 15s default
    assert route["route"]["retry_policy"]["num_retries"] == 2  # istiod's default policy
    vs["spec"]["http"][0]["timeout"] = "2.5s"
    vs["spec"]["http"][0]["retries"] = {"attempts": 3, "perTryTimeout": "1s", "retryOn": "5xx"}
    (route,) = _routes(route_configuration(vs, dr))
    assert route["route"]["timeout"] == "2.5s"
    assert route["route"]["retry_policy"] == {
        "retry_on": "5xx",
        "num_retries": 3,
        "per_try_timeout": "1s",
    }
    vs["spec"]["http"][0]["retries"] = {"attempts": 0}
    (route,) = _routes(route_configuration(vs, dr))
    assert "retry_policy" not in route["route"]


@pytest.mark.parametrize("strategy", ["canary", "shadow", "abtest", "bluegreen"])
def test_every_step_references_only_declared_subsets(strategy: str) -> None:
    exp = _experiment(strategy)
    for step in all_steps(exp):
        config = _translate(exp, step)
        assert referenced_clusters(config) <= {V1, V2}
        response = discovery_response(config, "x")
        assert response["resources"][0]["@type"].endswith("RouteConfiguration")


def test_unknown_subset_and_unsupported_fields_are_errors_naming_the_field() -> None:
    exp = _experiment()
    docs = manifests(exp, plan(exp)[0])
    dr = find_manifest(docs, "DestinationRule")
    vs = copy.deepcopy(find_manifest(docs, "VirtualService"))
    vs["spec"]["http"][0]["route"][1]["destination"]["subset"] = "v3"
    with pytest.raises(MeshError, match=r"spec.http\[0\].route\[1\].destination.subset: 'v3'"):
        route_configuration(vs, dr)
    vs = copy.deepcopy(find_manifest(docs, "VirtualService"))
    vs["spec"]["http"][0]["fault"] = {"abort": {"httpStatus": 500}}
    with pytest.raises(MeshError, match=r"spec.http\[0\].fault: not supported"):
        route_configuration(vs, dr)
    vs = copy.deepcopy(find_manifest(docs, "VirtualService"))
    vs["spec"]["http"][0]["route"][0]["weight"] = 50
    with pytest.raises(MeshError, match="sum to 100"):
        route_configuration(vs, dr)
    with pytest.raises(MeshError, match="exactly one VirtualService"):
        find_manifest([dr], "VirtualService")


def test_bootstraps_use_loopback_rds_with_watched_directory_and_tap(tmp_path: Any) -> None:
    rds = tmp_path / "rds" / "routes.json"
    out = outbound_bootstrap(rds, {V1: ("127.0.0.1", 1001), V2: ("127.0.0.1", 1002)})
    hcm = out["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    source = hcm["rds"]["config_source"]["path_config_source"]
    assert source == {"path": str(rds), "watched_directory": {"path": str(rds.parent)}}
    assert hcm["preserve_external_request_id"] is True
    assert out["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    assert [c["name"] for c in out["static_resources"]["clusters"]] == [V1, V2]
    side = inbound_bootstrap(8080, "127.0.0.1", 9000, tmp_path / "tap" / "v2")
    hcm = side["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["http_filters"][0]["name"] == "envoy.filters.http.tap"
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert [r["route"]["cluster"] for r in routes] == ["inbound|8080|mirror|", "inbound|8080||"]


# ------------------------------------------------------------- the Gateway API (HTTPRoute) path
GATEWAY_EXAMPLES = REPO / "istio_manifests" / "examples" / "gateway-api"


def _versions(exp: Experiment) -> dict[str, dict[str, str]]:
    return {v.subset: dict(v.labels) for v in (exp.spec.baseline, exp.spec.candidate)}


def _both(exp: Experiment, step: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    host, versions = exp.spec.service.host, _versions(exp)
    return (
        step_route_configuration(render_step(exp, step, "istio"), host, versions),
        step_route_configuration(render_step(exp, step, "gateway-api"), host, versions),
    )


GATEWAY_SPECS = sorted(GATEWAY_EXAMPLES.glob("*.experiment.yaml"))


@pytest.mark.parametrize("path", GATEWAY_SPECS, ids=[p.name for p in GATEWAY_SPECS])
def test_both_routing_apis_translate_to_identical_envoy_routes(path: Any) -> None:
    exp = load_experiment(path)
    for step in all_steps(exp):
        istio, gateway = _both(exp, step)
        assert gateway == istio, step.name
        assert json.dumps(gateway, sort_keys=True) == json.dumps(istio, sort_keys=True)


def test_identical_for_the_reference_spec_under_every_strategy_and_with_fractions() -> None:
    base = _experiment()
    service = base.spec.service.model_copy(update={"retries": None, "gateways": None})
    for strategy in ("canary", "shadow", "abtest", "bluegreen"):
        spec = base.spec.model_copy(
            update={
                "strategy": strategy,
                "service": service,
                "shadow": Shadow(mirror_percent=33.3333),
            }
        )
        exp = base.model_copy(update={"spec": spec})
        for step in all_steps(exp):
            istio, gateway = _both(exp, step)
            assert gateway == istio, (strategy, step.name)


def test_literal_prefix_reads_back_only_escaped_literals() -> None:
    assert literal_prefix("lab-.*") == "lab-"
    assert literal_prefix(r"/v2/a\.b\(c\).*") == "/v2/a.b(c)"
    assert literal_prefix("lab-") is None
    assert literal_prefix("la.b.*") is None  # unescaped '.' is a wildcard
    assert literal_prefix(r"\d+.*") is None
    assert literal_prefix("a\\.*") is None  # the '.*' is escaped: a literal '.' then '*'


def test_gateway_path_matches_follow_istio_gateway_semantics() -> None:
    assert httproute_match({"path": {"type": "PathPrefix", "value": "/v2/"}}, "m") == {
        "path_separated_prefix": "/v2"
    }
    assert httproute_match({"path": {"type": "PathPrefix", "value": "/"}}, "m") == {"prefix": "/"}
    assert httproute_match({"path": {"type": "Exact", "value": "/a"}}, "m") == {"path": "/a"}
    assert httproute_match(
        {
            "path": {"type": "RegularExpression", "value": "/v[12]/.*"},
            "headers": [{"type": "RegularExpression", "name": "a", "value": "x+"}],
        },
        "m",
    ) == {
        "safe_regex": {"regex": "/v[12]/.*"},
        "headers": [{"name": "a", "string_match": {"safe_regex": {"regex": "x+"}}}],
    }
    assert duration_seconds("1m30s250ms", "t") == 90.25
    with pytest.raises(MeshError, match="not a Gateway API duration"):
        duration_seconds("1.5s", "t")


def test_unsupported_httproute_fields_and_unknown_backends_are_errors() -> None:
    exp = load_experiment(GATEWAY_EXAMPLES / "canary.experiment.yaml")
    docs = render_step(exp, plan(exp)[0])
    host, versions = exp.spec.service.host, _versions(exp)
    route = copy.deepcopy(docs[-1])
    route["spec"]["rules"][0]["filters"] = [{"type": "URLRewrite", "urlRewrite": {}}]
    with pytest.raises(MeshError, match=r"spec.rules\[0\].filters\[0\].type: 'URLRewrite'"):
        step_route_configuration([*docs[:-1], route], host, versions)
    route = copy.deepcopy(docs[-1])
    route["spec"]["rules"][0]["backendRefs"][1]["name"] = "elsewhere"
    with pytest.raises(MeshError, match=r"backendRefs\[1\].name: 'elsewhere'"):
        step_route_configuration([*docs[:-1], route], host, versions)
    route = copy.deepcopy(docs[-1])
    route["spec"]["rules"][0]["matches"] = [{"queryParams": [{"name": "a", "value": "b"}]}]
    with pytest.raises(MeshError, match=r"matches\[0\].queryParams: not supported"):
        step_route_configuration([*docs[:-1], route], host, versions)
    service = copy.deepcopy(docs[0])
    service["spec"]["selector"] = {"app": "fraud-model"}  # no version label: selects no version
    with pytest.raises(MeshError, match="picks 0 versions"):
        step_route_configuration([service, docs[1], docs[2]], host, versions)
    assert step_subsets(docs, versions) == ["v1", "v2"]


def test_precedence_not_rule_order_decides_like_istio() -> None:
    """A regex-path rule listed before a catch-all with the default PathPrefix / is outranked by it
    in Istio; the translation shows it (which is why meshlab's catch-all then matches by regex)."""
    exp = load_experiment(GATEWAY_EXAMPLES / "abtest.experiment.yaml")
    docs = render_step(exp, plan(exp)[0])
    host, versions = exp.spec.service.host, _versions(exp)
    names = [r["name"] for r in _routes(step_route_configuration(docs, host, versions))]
    assert names == [
        "meshlab-fraud-abtest-match-0",
        "meshlab-fraud-abtest-match-1",
        "meshlab-fraud-abtest",
    ]
    route = copy.deepcopy(docs[-1])
    del route["spec"]["rules"][-1]["matches"]  # the catch-all as the API would default it
    config = step_route_configuration([*docs[:-1], route], host, versions)
    names = [r["name"] for r in _routes(config)]
    assert names == [
        "meshlab-fraud-abtest-match-0",
        "meshlab-fraud-abtest",
        "meshlab-fraud-abtest-match-1",
    ]
    istio = step_route_configuration(render_step(exp, plan(exp)[0], "istio"), host, versions)
    assert not same_decisions(config, istio)
    swapped = copy.deepcopy(docs[-1])
    rules = swapped["spec"]["rules"]
    rules[0], rules[1] = rules[1], rules[0]  # header-matched rules: only their order changes
    assert same_decisions(step_route_configuration([*docs[:-1], swapped], host, versions), istio)
