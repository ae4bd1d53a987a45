"""Manifest builders: every strategy and step validates against Istio's CRD schema and its rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshlab.manifests import ARM_HEADER, all_steps, manifests, plan, resource_name, step_by_name
from meshlab.spec import Experiment, load_experiment
from tests.conftest import EXAMPLE, REPO
from tests.support.istio_schema import istio_schema_errors

SPECS = [*sorted((REPO / "istio_manifests" / "examples").glob("*.experiment.yaml")), EXAMPLE]


def _experiments() -> list[tuple[str, Experiment]]:
    out = []
    for path in SPECS:
        exp = load_experiment(path)
        out.append((path.name, exp))
        if path == EXAMPLE:  # the reference file under every strategy it carries a block for
            for strategy in ("shadow", "abtest", "bluegreen"):
                spec = exp.spec.model_copy(update={"strategy": strategy})
                out.append((f"{path.name}:{strategy}", exp.model_copy(update={"spec": spec})))
    return out


EXPERIMENTS = _experiments()


def _main_route(vs: dict[str, Any], exp: Experiment) -> dict[str, Any]:
    routes = [r for r in vs["spec"]["http"] if r["name"] == resource_name(exp)]
    assert len(routes) == 1
    return routes[0]


def _weights(route: dict[str, Any], exp: Experiment) -> dict[str, int]:
    by_subset = {exp.spec.baseline.subset: "baseline", exp.spec.candidate.subset: "candidate"}
    out = {"baseline": 0, "candidate": 0}
    for dest in route["route"]:
        out[by_subset[dest["destination"]["subset"]]] += dest.get("weight", 100)
    return out


@pytest.mark.parametrize(("name", "exp"), EXPERIMENTS, ids=[n for n, _ in EXPERIMENTS])
def test_every_step_validates_against_istio_crd_schema(name: str, exp: Experiment) -> None:
    for step in all_steps(exp):
        for doc in manifests(exp, step):
            errors = istio_schema_errors(doc)
            assert not errors, f"{name} step {step.name} {doc['kind']}: {errors}"


@pytest.mark.parametrize(("name", "exp"), EXPERIMENTS, ids=[n for n, _ in EXPERIMENTS])
def test_istio_semantic_rules_hold(name: str, exp: Experiment) -> None:
    for step in all_steps(exp):
        dr, vs = manifests(exp, step)
        assert dr["kind"] == "DestinationRule" and vs["kind"] == "VirtualService"
        subsets = {s["name"] for s in dr["spec"]["subsets"]}
        for route in vs["spec"]["http"]:
            assert not ("mirror" in route and "mirrors" in route)
            dests = route["route"]
            if len(dests) > 1:
                assert sum(d["weight"] for d in dests) == 100
            assert all(d.get("weight", 0) >= 0 for d in dests)
            for d in dests:
                assert d["destination"]["subset"] in subsets
                assert d["headers"]["response"]["set"][ARM_HEADER] in ("baseline", "candidate")
            if "mirror" in route:
                assert 0 <= route["mirrorPercentage"]["value"] <= 100
        assert vs["spec"]["http"][-1].get("match") is None, "the last route must catch everything"


def test_canary_steps_follow_spec_weights() -> None:
    exp = load_experiment(EXAMPLE)
    for step, weight in zip(plan(exp), [5, 10, 25, 50, 100], strict=True):
        _, vs = manifests(exp, step)
        assert _weights(_main_route(vs, exp), exp) == {
            "baseline": 100 - weight,
            "candidate": weight,
        }
        assert "mirror" not in _main_route(vs, exp)


def test_end_states() -> None:
    exp = load_experiment(EXAMPLE)
    _, promoted = manifests(exp, step_by_name(exp, "promoted"))
    _, rollback = manifests(exp, step_by_name(exp, "rollback"))
    assert _weights(_main_route(promoted, exp), exp) == {"baseline": 0, "candidate": 100}
    assert len(rollback["spec"]["http"]) == 1
    only = rollback["spec"]["http"][0]
    assert [d["destination"]["subset"] for d in only["route"]] == ["v1"]
    assert "mirror" not in only and "match" not in only


def test_shadow_mirrors_to_candidate_and_serves_baseline() -> None:
    exp = load_experiment(REPO / "istio_manifests/examples/shadow.experiment.yaml")
    first = plan(exp)[0]
    _, vs = manifests(exp, first)
    route = _main_route(vs, exp)
    assert _weights(route, exp) == {"baseline": 100, "candidate": 0}
    assert route["mirror"] == {"host": "fraud-model", "subset": "v2", "port": {"number": 8080}}
    assert route["mirrorPercentage"] == {"value": 50.0}
    # then: canary follows the shadow step
    assert [s.candidate_weight for s in plan(exp)[1:]] == [10, 50, 100]


def test_bluegreen_preview_then_switch() -> None:
    exp = load_experiment(REPO / "istio_manifests/examples/bluegreen.experiment.yaml")
    preview, switch = plan(exp)
    _, vs = manifests(exp, preview)
    first = vs["spec"]["http"][0]
    assert first["match"] == [{"headers": {"x-meshlab-preview": {"exact": "true"}}}]
    assert [d["destination"]["subset"] for d in first["route"]] == ["green"]
    assert _weights(_main_route(vs, exp), exp) == {"baseline": 100, "candidate": 0}
    _, vs = manifests(exp, switch)
    assert _weights(_main_route(vs, exp), exp) == {"baseline": 0, "candidate": 100}


def test_abtest_routes_matches_to_candidate_in_order() -> None:
    exp = load_experiment(REPO / "istio_manifests/examples/abtest.experiment.yaml")
    _, vs = manifests(exp, plan(exp)[0])
    names = [r["name"] for r in vs["spec"]["http"]]
    assert names == [
        "meshlab-fraud-abtest-match-0",
        "meshlab-fraud-abtest-match-1",
        "meshlab-fraud-abtest",
    ]
    assert vs["spec"]["http"][1]["match"] == [
        {"headers": {"x-tenant": {"prefix": "lab-"}}, "uri": {"prefix": "/v2/models/fraud"}}
    ]
    assert vs["spec"]["gateways"] == ["mesh", "models/public-gateway"]


def test_timeouts_and_retries_are_rendered() -> None:
    exp = load_experiment(REPO / "istio_manifests/examples/canary.experiment.yaml")
    _, vs = manifests(exp, plan(exp)[0])
    route = vs["spec"]["http"][0]
    assert route["timeout"] == "2s"
    assert route["retries"] == {"attempts": 2, "perTryTimeout": "0.5s", "retryOn": "5xx,reset"}


def test_schema_validator_rejects_what_istio_rejects() -> None:
    """The validator itself must be able to fail: unknown fields, wrong types, bad durations."""
    exp = load_experiment(EXAMPLE)
    _, vs = manifests(exp, plan(exp)[0])
    vs["spec"]["http"][0]["mirrors"] = "nope"
    vs["spec"]["http"][0]["timeout"] = "0s"
    vs["spec"]["http"][0]["weightz"] = 1
    errors = " ".join(istio_schema_errors(vs))
    assert "mirrors" in errors and "weightz" in errors and "timeout" in errors


def test_golden_examples_do_not_drift(tmp_path: Path) -> None:
    """istio_manifests/examples/ must equal what the builders render (python istio_manifests/regenerate.py)."""
    for spec_path in sorted((REPO / "istio_manifests" / "examples").glob("*.experiment.yaml")):
        exp = load_experiment(spec_path)
        folder = spec_path.parent / spec_path.name.removesuffix(".experiment.yaml")
        committed = sorted(p.name for p in folder.glob("*.yaml"))
        assert len(committed) == len(all_steps(exp)), (
            f"{folder}: run python istio_manifests/regenerate.py"
        )
        for path, step in zip(sorted(folder.glob("*.yaml")), all_steps(exp), strict=True):
            docs = list(yaml.safe_load_all(path.read_text()))
            assert docs == manifests(exp, step), (
                f"{path} drifted: run python istio_manifests/regenerate.py"
            )
