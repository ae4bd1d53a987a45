"""Hypothesis properties of the builders for any valid spec: weights, monotonicity, rollback, APIs."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshlab.manifests import (
    all_steps,
    manifests,
    plan,
    promoted,
    render_step,
    resource_name,
    rollback,
    routing_plan,
)
from meshlab.mesh.envoy_httproute import step_route_configuration
from meshlab.spec import Experiment, Version, parse_experiment
from tests.support.envoy_routes import same_decisions
from tests.support.gateway_schema import gateway_schema_errors

weights = st.lists(st.integers(0, 100), min_size=1, max_size=8).map(sorted)
header = st.from_regex(r"x-[a-z]{1,8}", fullmatch=True)
string_match = st.sampled_from([{"exact": "b"}, {"prefix": "a.b("}, {"regex": "x+"}])
match = st.fixed_dictionaries(
    {"headers": st.dictionaries(header, string_match, min_size=1, max_size=2)},
    optional={"uri": st.sampled_from([{"prefix": "/"}, {"prefix": "/v2/m.x"}, {"exact": "/a"}])},
)


@st.composite
def experiments(draw: st.DrawFn) -> Experiment:
    strategy = draw(st.sampled_from(["canary", "shadow", "bluegreen", "abtest"]))
    spec: dict[str, Any] = {
        "strategy": strategy,
        "service": {"host": "svc", "port": draw(st.integers(1, 65535))},
        "baseline": {"subset": "v1", "labels": {"version": "v1"}},
        "candidate": {"subset": "v2", "labels": {"version": "v2"}},
        "canary": {"steps": draw(weights)},
        "shadow": {"mirrorPercent": draw(st.floats(0, 100, allow_nan=False))},
        "abtest": {"match": draw(st.lists(match, min_size=1, max_size=3))},
    }
    if strategy == "shadow" and draw(st.booleans()):
        spec["then"] = "canary"
    return parse_experiment(
        {
            "apiVersion": "meshlab.io/v1alpha1",
            "kind": "Experiment",
            "metadata": {"name": "p"},
            "spec": spec,
        }
    )


def _split(exp: Experiment, vs: dict[str, Any]) -> dict[str, int]:
    route = next(r for r in vs["spec"]["http"] if r["name"] == resource_name(exp))
    out = {"v1": 0, "v2": 0}
    for dest in route["route"]:
        out[dest["destination"]["subset"]] += dest.get("weight", 100)
    return out


@settings(max_examples=150, deadline=None)
@given(experiments())
def test_weights_sum_to_100_and_never_go_down(exp: Experiment) -> None:
    previous = -1
    for step in plan(exp):
        _, vs = manifests(exp, step)
        split = _split(exp, vs)
        assert sum(split.values()) == 100
        assert split["v2"] >= previous
        previous = split["v2"]
        for route in vs["spec"]["http"]:
            if "mirrorPercentage" in route:
                assert 0 < route["mirrorPercentage"]["value"] <= 100


@settings(max_examples=150, deadline=None)
@given(experiments())
def test_rollback_routes_nothing_to_the_candidate(exp: Experiment) -> None:
    _, vs = manifests(exp, rollback())
    for route in vs["spec"]["http"]:
        assert "mirror" not in route and "mirrors" not in route
        assert all(d["destination"]["subset"] == "v1" for d in route["route"])
    _, vs = manifests(exp, promoted())
    assert _split(exp, vs) == {"v1": 0, "v2": 100}


@settings(max_examples=100, deadline=None)
@given(experiments())
def test_gateway_routes_are_crd_valid_and_route_like_istio_on_envoy(exp: Experiment) -> None:
    """Any valid spec: every HTTPRoute passes the CRD schema and CEL rules, and translates to the
    Envoy routes of the VirtualService, up to the order of header-matched routes that all go to the
    candidate (the Gateway API ranks rules by specificity, not by their order)."""
    versions = {v.subset: dict(v.labels) for v in (exp.spec.baseline, exp.spec.candidate)}
    for step in all_steps(exp):
        docs = render_step(exp, step, "gateway-api")
        assert not gateway_schema_errors(docs[-1]), step.name
        istio = step_route_configuration(render_step(exp, step, "istio"), "svc", versions)
        assert same_decisions(step_route_configuration(docs, "svc", versions), istio)


@settings(max_examples=150, deadline=None)
@given(experiments())
def test_a_control_arm_keeps_weights_whole_and_matches_the_candidate_up_to_half(
    exp: Experiment,
) -> None:
    control = Version(subset="v1c", labels={"version": "v1c"})
    for step in all_steps(exp):
        main = routing_plan(exp, step, control=control).main_rule
        weights = {b.arm: b.weight for b in main.backends}
        assert sum(weights.values()) == 100
        assert all(0 <= w <= 100 for w in weights.values())
        if "control" in weights and step.candidate_weight <= 50:
            assert weights["control"] == weights["candidate"]
        assert {m.percent for m in main.mirrors} <= {step.mirror_percent}
