"""Hypothesis properties of the builders for any valid spec: weights, monotonicity, rollback."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshlab.manifests import manifests, plan, promoted, resource_name, rollback
from meshlab.spec import Experiment, parse_experiment

weights = st.lists(st.integers(0, 100), min_size=1, max_size=8).map(sorted)
header = st.from_regex(r"x-[a-z]{1,8}", fullmatch=True)
match = st.fixed_dictionaries(
    {"headers": st.dictionaries(header, st.just({"exact": "b"}), min_size=1, max_size=2)}
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
