"""Gateway API rendering: every HTTPRoute is CRD-schema and CEL valid and routes as Istio would."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshlab.errors import ConfigError
from meshlab.manifests import (
    ARM_HEADER,
    all_steps,
    gateway_manifests,
    manifests,
    plan,
    render_gateway,
    render_istio,
    render_step,
    routing_plan,
)
from meshlab.manifests.gateway import CATCH_ALL_REGEX, escape_regex, gateway_duration
from meshlab.manifests.routing import RoutingPlan
from meshlab.spec import Experiment, Version, load_experiment
from tests.conftest import EXAMPLE, REPO
from tests.support.gateway_schema import gateway_schema_errors
from tests.support.istio_schema import istio_schema_errors

GATEWAY_EXAMPLES = REPO / "istio_manifests" / "examples" / "gateway-api"
ISTIO_EXAMPLES = REPO / "istio_manifests" / "examples"
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def as_gateway(exp: Experiment, **spec_updates: Any) -> Experiment:
    """``exp`` routed with the Gateway API: Istio-only settings removed (no retries, mesh only)."""
    service = exp.spec.service.model_copy(update={"retries": None, "gateways": None})
    target = exp.spec.target.model_copy(update={"routing": "gateway-api"})
    spec = exp.spec.model_copy(update={"service": service, "target": target, **spec_updates})
    return exp.model_copy(update={"spec": spec})


def _experiments() -> list[tuple[str, Experiment]]:
    out = [(p.name, load_experiment(p)) for p in sorted(GATEWAY_EXAMPLES.glob("*.experiment.yaml"))]
    for path in [*sorted(ISTIO_EXAMPLES.glob("*.experiment.yaml")), EXAMPLE]:
        out.append((f"istio:{path.name}", as_gateway(load_experiment(path))))
    base = load_experiment(EXAMPLE)
    for strategy in ("shadow", "abtest", "bluegreen"):
        out.append((f"{EXAMPLE.name}:{strategy}", as_gateway(base, strategy=strategy)))
    return out


EXPERIMENTS = _experiments()
CONTROL = Version(subset="v1-control", labels={"version": "v1", "meshlab.io/arm": "control"})


def _arm_of_backend(route: dict[str, Any], services: dict[str, dict[str, Any]], ref: Any) -> str:
    return str(services[ref["name"]]["metadata"]["labels"]["meshlab.io/arm"])


@pytest.mark.parametrize(("name", "exp"), EXPERIMENTS, ids=[n for n, _ in EXPERIMENTS])
def test_every_step_validates_against_the_httproute_crd_and_its_cel_rules(
    name: str, exp: Experiment
) -> None:
    for step in all_steps(exp):
        docs = gateway_manifests(exp, step)
        assert [d["kind"] for d in docs] == ["Service", "Service", "HTTPRoute"]
        errors = gateway_schema_errors(docs[-1])
        assert not errors, f"{name} step {step.name}: {errors}"
        for service in docs[:-1]:
            assert _DNS1035.match(service["metadata"]["name"])
            assert len(service["metadata"]["name"]) <= 63


@pytest.mark.parametrize("strategy", ["canary", "shadow", "abtest", "bluegreen"])
def test_a_control_arm_is_a_third_backend_valid_in_both_apis(strategy: str) -> None:
    exp = as_gateway(load_experiment(EXAMPLE), strategy=strategy)
    for step in all_steps(exp):
        p = routing_plan(exp, step, control=CONTROL)
        gateway = render_gateway(p)
        assert len(gateway) == 4 and not gateway_schema_errors(gateway[-1])
        for doc in render_istio(p):
            assert not istio_schema_errors(doc), (strategy, step.name, doc)
        main = p.main_rule
        weights = {b.arm: b.weight for b in main.backends}
        w = step.candidate_weight
        if step.kind == "canary":
            assert weights == {
                "baseline": 100 - w - min(w, 100 - w),
                "candidate": w,
                "control": min(w, 100 - w),
            }
        if step.kind == "shadow":
            assert {(m.arm, m.percent) for m in main.mirrors} == {
                ("candidate", step.mirror_percent),
                ("control", step.mirror_percent),
            }
            vs = render_istio(p)[1]
            assert "mirror" not in vs["spec"]["http"][-1]
            assert len(vs["spec"]["http"][-1]["mirrors"]) == 2
        if step.kind == "rollback":
            assert p.routed_arms() == {"baseline"}


def _istio_view(exp: Experiment, step: Any) -> list[tuple[Any, ...]]:
    """(matches, {arm: weight}, {arm: mirror %}, arm headers) per Istio route, in order."""
    _, vs = manifests(exp, step)
    by_subset = {v.subset: v.arm for v in routing_plan(exp, step).versions}
    out = []
    for route in vs["spec"]["http"]:
        weights = {
            by_subset[d["destination"]["subset"]]: d.get("weight", 100) for d in route["route"]
        }
        mirrors = {}
        if "mirror" in route:
            mirrors[by_subset[route["mirror"]["subset"]]] = route["mirrorPercentage"]["value"]
        headers = {d["headers"]["response"]["set"][ARM_HEADER] for d in route["route"]}
        out.append((route.get("match"), weights, mirrors, headers))
    return out


def _gateway_view(exp: Experiment, step: Any) -> list[tuple[Any, ...]]:
    docs = gateway_manifests(exp, step)
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    out = []
    for rule in docs[-1]["spec"]["rules"]:
        refs = rule["backendRefs"]
        weights = {_arm_of_backend(rule, services, r): r.get("weight", 100) for r in refs}
        mirrors = {}
        for f in rule.get("filters", []):
            mirror = f["requestMirror"]
            fraction = mirror.get("fraction")
            percent = (
                100 * fraction["numerator"] / fraction["denominator"]
                if fraction
                else mirror["percent"]
            )
            mirrors[_arm_of_backend(rule, services, mirror["backendRef"])] = percent
        headers = {
            h["value"]
            for r in refs
            for f in r["filters"]
            for h in f["responseHeaderModifier"]["set"]
            if h["name"] == ARM_HEADER
        }
        out.append((_as_istio_match(rule.get("matches")), weights, mirrors, headers))
    return out


def _unescape_prefix(pattern: str) -> str:
    assert pattern.endswith(".*")
    return re.sub(r"\\(.)", r"\1", pattern[:-2])


def _as_istio_match(matches: Any) -> Any:
    """Read a Gateway API match back into the Istio match it was rendered from."""
    if matches is None or matches == [{"path": CATCH_ALL_REGEX}]:
        return None  # the catch-all: no match, or every path by regex (outranked by path regexes)
    out = []
    for m in matches:
        istio: dict[str, Any] = {}
        for h in m.get("headers", []):
            kind = "exact" if h["type"] == "Exact" else "prefix"
            value = h["value"] if kind == "exact" else _unescape_prefix(h["value"])
            istio.setdefault("headers", {})[h["name"]] = {kind: value}
        if "path" in m:
            path = m["path"]
            istio["uri"] = (
                {"exact": path["value"]}
                if path["type"] == "Exact"
                else {"prefix": path["value"]}
                if path["type"] == "PathPrefix"
                else {"prefix": _unescape_prefix(path["value"])}
            )
        out.append(istio)
    return out


@pytest.mark.parametrize(("name", "exp"), EXPERIMENTS, ids=[n for n, _ in EXPERIMENTS])
def test_gateway_routes_the_same_requests_to_the_same_arms_as_istio(
    name: str, exp: Experiment
) -> None:
    for step in all_steps(exp):
        assert _gateway_view(exp, step) == _istio_view(exp, step), (name, step.name)


def test_prefix_matches_become_anchored_regexes_with_the_same_meaning() -> None:
    assert escape_regex("lab-") + ".*" == "lab-.*"
    assert escape_regex("/v2/models/a.b(c)") == r"/v2/models/a\.b\(c\)"
    pattern = escape_regex("/v2/a.b+") + ".*"
    assert re.fullmatch(pattern, "/v2/a.b+/infer")
    assert not re.fullmatch(pattern, "/v2/aXb+/infer")


def test_durations_use_the_gateway_api_syntax() -> None:
    assert gateway_duration(2.0, "f") == "2s"
    assert gateway_duration(0.5, "f") == "500ms"
    assert gateway_duration(90.25, "f") == "1m30s250ms"
    assert gateway_duration(0, "f") == "0s"
    with pytest.raises(ConfigError, match="whole number of milliseconds"):
        gateway_duration(0.0005, "spec.service.timeout")


def _bad(exp: Experiment, **service: Any) -> Experiment:
    spec = exp.spec.model_copy(update={"service": exp.spec.service.model_copy(update=service)})
    return exp.model_copy(update={"spec": spec})


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ({"gateways": ["mesh", "models/public"]}, r"spec\.service\.gateways: 'models/public'"),
        ({"host": "fraud.example.com"}, r"spec\.service\.host: 'fraud\.example\.com' is not"),
        ({"host": "fraud-model.other.svc.cluster.local"}, r"set metadata\.namespace: other"),
    ],
)
def test_what_the_gateway_api_cannot_say_is_a_config_error(
    service: dict[str, Any], message: str
) -> None:
    exp = _bad(as_gateway(load_experiment(EXAMPLE)), **service)
    with pytest.raises(ConfigError, match=message):
        gateway_manifests(exp, plan(exp)[0])


def test_retries_and_queries_are_rejected_naming_the_field() -> None:
    exp = load_experiment(ISTIO_EXAMPLES / "canary.experiment.yaml")  # has retries
    with pytest.raises(ConfigError, match=r"^spec\.service\.retries: .*routing: istio"):
        render_step(exp, plan(exp)[0], "gateway-api")
    data = yaml.safe_load((GATEWAY_EXAMPLES / "abtest.experiment.yaml").read_text())
    data["spec"]["abtest"]["match"][1]["uri"] = {"prefix": "/v2?x=1"}
    from meshlab.spec import parse_experiment

    exp = parse_experiment(data)
    with pytest.raises(ConfigError, match=r"spec\.abtest\.match\[1\]\.uri\.prefix: .* query"):
        gateway_manifests(exp, plan(exp)[0])


def test_backend_services_select_the_version_labels_over_the_parent_selector() -> None:
    exp = load_experiment(GATEWAY_EXAMPLES / "canary.experiment.yaml")
    p: RoutingPlan = routing_plan(exp, plan(exp)[0])
    from meshlab.manifests.gateway import backend_services

    baseline, candidate = backend_services(p, {"app": "fraud", "tier": "ml"}, "http-web")
    assert baseline["spec"]["selector"] == {"app": "fraud-model", "tier": "ml", "version": "v1"}
    assert candidate["spec"]["ports"][0]["targetPort"] == "http-web"
    assert baseline["metadata"]["namespace"] == "models"
    route = gateway_manifests(exp, plan(exp)[0])[-1]
    assert route["spec"]["parentRefs"] == [
        {"group": "", "kind": "Service", "name": "fraud-model", "port": 8080}
    ]
    assert route["spec"]["rules"][0]["timeouts"] == {"request": "2s"}


def test_golden_gateway_examples_do_not_drift() -> None:
    """examples/gateway-api/ must equal what the builders render (python istio_manifests/regenerate.py)."""
    specs = sorted(GATEWAY_EXAMPLES.glob("*.experiment.yaml"))
    assert len(specs) == 4
    for spec_path in specs:
        exp = load_experiment(spec_path)
        assert exp.spec.target.routing == "gateway-api"
        folder = spec_path.parent / spec_path.name.removesuffix(".experiment.yaml")
        files = sorted(folder.glob("*.yaml"))
        assert len(files) == len(all_steps(exp)), (
            f"{folder}: run python istio_manifests/regenerate.py"
        )
        for path, step in zip(files, all_steps(exp), strict=True):
            docs = list(yaml.safe_load_all(path.read_text()))
            assert docs == render_step(exp, step), f"{path} drifted: run regenerate.py"


def test_render_cli_emits_either_api(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from meshlab.cli import main

    spec = ISTIO_EXAMPLES / "shadow.experiment.yaml"
    assert main(["render", "-f", str(spec), "--routing", "gateway-api", "--step", "1"]) == 0
    kinds = [d["kind"] for d in yaml.safe_load_all(capsys.readouterr().out)]
    assert kinds == ["Service", "Service", "HTTPRoute"]
    assert main(["render", "-f", str(spec), "--routing", "nope"]) == 2
    assert "unknown routing API 'nope'; known: gateway-api, istio" in capsys.readouterr().err
    spec = GATEWAY_EXAMPLES / "bluegreen.experiment.yaml"
    assert main(["render", "-f", str(spec), "--all", "-o", str(tmp_path / "out")]) == 0
    assert len(list((tmp_path / "out").glob("*.yaml"))) == 4
    assert main(["render", "-f", str(spec), "--routing", "istio", "--step", "2"]) == 0
    kinds = [d["kind"] for d in yaml.safe_load_all(capsys.readouterr().out)]
    assert kinds == ["DestinationRule", "VirtualService"]


def test_validate_reports_what_the_routing_api_cannot_express(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from meshlab.cli import main

    data = yaml.safe_load((ISTIO_EXAMPLES / "canary.experiment.yaml").read_text())  # has retries
    data["spec"]["target"] = {"routing": "gateway-api"}
    spec = tmp_path / "exp.yaml"
    spec.write_text(yaml.safe_dump(data))
    assert main(["validate", "-f", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("meshlab: error: spec.service.retries: ") and "\n" not in err
    assert main(["validate", "-f", str(GATEWAY_EXAMPLES / "abtest.experiment.yaml")]) == 0


def test_the_catch_all_matches_by_regex_only_when_a_rule_matches_the_path_by_regex() -> None:
    exp = load_experiment(GATEWAY_EXAMPLES / "abtest.experiment.yaml")
    rules = gateway_manifests(exp, plan(exp)[0])[-1]["spec"]["rules"]
    assert rules[-1]["matches"] == [{"path": CATCH_ALL_REGEX}]
    assert rules[1]["matches"][0]["path"] == {
        "type": "RegularExpression",
        "value": "/v2/models/fraud.*",
    }
    exp = load_experiment(GATEWAY_EXAMPLES / "bluegreen.experiment.yaml")
    rules = gateway_manifests(exp, plan(exp)[0])[-1]["spec"]["rules"]
    assert "matches" not in rules[-1]  # header matches outrank the default PathPrefix /
    data = yaml.safe_load((GATEWAY_EXAMPLES / "abtest.experiment.yaml").read_text())
    data["spec"]["abtest"]["match"][1]["uri"] = {"regex": "/a"}
    from meshlab.spec import parse_experiment

    exp = parse_experiment(data)
    with pytest.raises(ConfigError, match=r"spec\.abtest\.match\[1\]\.uri\.regex: .*3 characters"):
        gateway_manifests(exp, plan(exp)[0])
