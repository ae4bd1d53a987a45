"""The registry: every name resolves to an implementation of the right interface; unknown names list the known."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from meshlab.errors import SpecError
from meshlab.manifests import RoutingPlan, plan, routing_plan
from meshlab.registry import MESH, METRICS, ROUTING, SAMPLES, mesh_backend, routing_renderer
from meshlab.spec import load_experiment
from meshlab.spec.target import MetricsSource, Target
from tests.conftest import EXAMPLE


@pytest.mark.parametrize("registry", [ROUTING, MESH, METRICS, SAMPLES], ids=lambda r: r.what)
def test_every_entry_imports(registry: object) -> None:
    from meshlab.registry import Registry

    assert isinstance(registry, Registry)
    for name in registry.names:
        assert registry.load(name) is not None


def test_routing_renderers_render_a_plan_in_apply_order() -> None:
    exp = load_experiment(EXAMPLE)
    service = exp.spec.service.model_copy(update={"retries": None, "gateways": None})
    exp = exp.model_copy(update={"spec": exp.spec.model_copy(update={"service": service})})
    p: RoutingPlan = routing_plan(exp, plan(exp)[0])
    kinds = {name: [d["kind"] for d in routing_renderer(name)(p)] for name in ROUTING.names}
    assert kinds == {
        "istio": ["DestinationRule", "VirtualService"],
        "gateway-api": ["Service", "Service", "HTTPRoute"],
    }


def test_mesh_targets_are_mesh_backends_and_match_the_spec() -> None:
    for name in MESH.names:
        backend = mesh_backend(name)
        assert backend.name == name
        assert all(hasattr(backend, m) for m in ("apply", "status", "rollback", "close", "for_run"))
    assert set(get_args(Target.model_fields["kind"].annotation)) == set(MESH.names)
    assert set(get_args(MetricsSource.model_fields["source"].annotation)) == set(METRICS.names)


def test_unknown_names_are_one_line_errors_listing_the_known_ones() -> None:
    with pytest.raises(SpecError) as info:
        ROUTING.check("gatewayapi")
    assert str(info.value) == (
        "spec.target.routing: unknown routing API 'gatewayapi'; known: gateway-api, istio"
    )
    with pytest.raises(
        SpecError, match=r"^spec.target.kind: unknown target 'k8s'; known: kubernetes, local$"
    ):
        mesh_backend("k8s")


def test_the_spec_accepts_exactly_the_registered_routing_apis(example_data: dict[str, Any]) -> None:
    from meshlab.spec import parse_experiment

    for name in ROUTING.names:
        example_data["spec"]["target"] = {"routing": name}
        assert parse_experiment(example_data).spec.target.routing == name
    example_data["spec"]["target"] = {"routing": "linkerd"}
    with pytest.raises(SpecError) as info:
        parse_experiment(example_data)
    assert str(info.value) == (
        "spec.target.routing: unknown routing API 'linkerd'; known: gateway-api, istio"
    )
    del example_data["spec"]["target"]
    assert parse_experiment(example_data).spec.target.routing == "istio"


def test_entries_may_name_a_factory_on_a_class_and_bad_targets_are_config_errors() -> None:
    from meshlab.errors import ConfigError
    from meshlab.registry import Registry

    registry = Registry(
        "thing", "spec.thing", {"a": "meshlab.registry:Registry.check", "b": "meshlab.nope:x"}
    )
    assert registry.load("a") is Registry.check
    with pytest.raises(
        ConfigError, match=r"^spec.thing: the thing 'b' is registered as meshlab.nope:x"
    ):
        registry.load("b")
