"""Strict PromQL templates: every variable required, none unknown, values escaped."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from meshlab.errors import ConfigError
from meshlab.metrics import (
    ENVOY,
    ISTIO,
    ISTIO_WORKLOAD,
    QueryTemplate,
    TemplateError,
    from_experiment,
    template_set,
)
from meshlab.metrics.arms import arm_variables
from meshlab.spec.experiment import Experiment
from meshlab.spec.metrics import ArmNames, PrometheusQueries


def test_missing_variable_is_an_error() -> None:
    with pytest.raises(TemplateError, match=r"no value for \$namespace"):
        ISTIO.render({"arm": "v1", "service_regex": "fraud-model"})


def test_unknown_variable_is_an_error() -> None:
    with pytest.raises(TemplateError, match="unknown variable 'nmespace'"):
        ISTIO.render({"arm": "v1", "service_regex": "x", "namespace": "a", "nmespace": "a"})


def test_values_cannot_break_out_of_the_label_string() -> None:
    query = QueryTemplate("t", 'm{a="$x"}').render({"x": 'v"} or vector(1) #\\'})
    assert query == 'm{a="v\\"} or vector(1) #\\\\"}'


def test_unknown_template_set_is_an_error_not_a_fallback() -> None:
    with pytest.raises(ConfigError, match="unknown metrics template set 'datadog'"):
        template_set("datadog")
    assert template_set("istio") is ISTIO


def test_istio_queries_for_the_example_use_the_destination_reporter(
    example_data: dict[str, Any],
) -> None:
    experiment = Experiment.model_validate(example_data)
    arms = arm_variables(experiment, ISTIO)
    requests, latency = ISTIO.render(arms["candidate"])
    selector = (
        'reporter="destination", destination_workload_namespace="models", '
        'destination_service_name=~"fraud-model(-shadow)?", destination_version="v2"'
    )
    assert requests == "istio_requests_total{" + selector + "}"
    assert latency == "istio_request_duration_milliseconds_bucket{" + selector + "}"
    assert ISTIO.status_label == "response_code"


def test_istio_service_regex_is_escaped_for_fqdn_hosts(example_data: dict[str, Any]) -> None:
    example_data["spec"]["service"]["host"] = "fraud.models.svc.cluster.local"
    arms = arm_variables(Experiment.model_validate(example_data), ISTIO)
    assert arms["baseline"]["service_regex"] == "fraud"
    example_data["spec"]["service"]["host"] = "a.b"
    assert (
        arm_variables(Experiment.model_validate(example_data), ISTIO)["baseline"]["service_regex"]
        == "a"
    )


def test_istio_needs_a_version_label(example_data: dict[str, Any]) -> None:
    example_data["spec"]["candidate"]["labels"] = {"track": "new"}
    with pytest.raises(ConfigError, match=r"spec\.candidate\.labels: no 'version' label"):
        arm_variables(Experiment.model_validate(example_data), ISTIO)


def test_workload_set_selects_deployments(example_data: dict[str, Any]) -> None:
    experiment = Experiment.model_validate(example_data)
    with pytest.raises(ConfigError, match=r"queries\.workloads: templates istio-workload needs"):
        arm_variables(experiment, ISTIO_WORKLOAD)
    arms = arm_variables(
        experiment, ISTIO_WORKLOAD, ArmNames(baseline="fraud-v1", candidate="fraud-v2")
    )
    requests, _ = ISTIO_WORKLOAD.render(arms["candidate"])
    assert 'destination_workload="fraud-v2"' in requests
    assert 'destination_workload_namespace="models"' in requests


def test_queries_spec_picks_templates_and_needs_workloads(example_data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="workloads"):
        PrometheusQueries.model_validate({"templates": "istio-workload"})
    queries = PrometheusQueries.model_validate(
        {
            "templates": "istio-workload",
            "workloads": {"baseline": "a", "candidate": "b"},
            "caFile": "/etc/ca.pem",
        }
    )
    backend = from_experiment(Experiment.model_validate(example_data), queries)
    try:
        assert backend.templates is ISTIO_WORKLOAD
        assert 'destination_workload="b"' in backend.queries["candidate"][0]
    finally:
        backend.close()
    default = from_experiment(Experiment.model_validate(example_data))
    try:
        assert default.templates is ENVOY  # target.kind local
    finally:
        default.close()


def test_envoy_queries_select_the_arm_cluster(example_data: dict[str, Any]) -> None:
    arms = arm_variables(Experiment.model_validate(example_data), ENVOY)
    requests, latency = ENVOY.render(arms["baseline"])
    assert (
        requests == 'envoy_cluster_upstream_rq{envoy_cluster_name="outbound|8080|v1|fraud-model"}'
    )
    assert latency.startswith("envoy_cluster_upstream_rq_time_bucket{")


def test_ambient_mode_reads_the_waypoints_reports(example_data: dict[str, Any]) -> None:
    """Ambient mode has no sidecars: the HTTP metrics are the waypoint's (reporter="waypoint")."""
    experiment = Experiment.model_validate(example_data)
    waypoint = template_set("istio-waypoint")
    requests, latency = waypoint.render(arm_variables(experiment, waypoint)["candidate"])
    selector = (
        'reporter="waypoint", destination_workload_namespace="models", '
        'destination_service_name=~"fraud-model(-shadow)?", destination_version="v2"'
    )
    assert requests == "istio_requests_total{" + selector + "}"
    assert latency == "istio_request_duration_milliseconds_bucket{" + selector + "}"
    by_workload = template_set("istio-waypoint-workload")
    with pytest.raises(ConfigError, match="templates istio-waypoint-workload needs"):
        arm_variables(experiment, by_workload)
    arms = arm_variables(
        experiment, by_workload, ArmNames(baseline="fraud-v1", candidate="fraud-v2")
    )
    requests, _ = by_workload.render(arms["baseline"])
    assert 'reporter="waypoint"' in requests and 'destination_workload="fraud-v1"' in requests
    queries = PrometheusQueries.model_validate({"templates": "istio-waypoint"})
    assert queries.templates == "istio-waypoint"


@pytest.mark.parametrize("templates", ["istio", "istio-waypoint"])
def test_gateway_api_routing_also_accepts_each_arms_backend_service(
    example_data: dict[str, Any], templates: str
) -> None:
    """An HTTPRoute sends each arm to meshlab-<service>-<subset>; both names select the arm."""
    import re

    example_data["spec"]["target"] = {"kind": "kubernetes", "routing": "gateway-api"}
    example_data["spec"]["service"].pop("retries", None)
    experiment = Experiment.model_validate(example_data)
    chosen = template_set(templates)
    arms = arm_variables(experiment, chosen)
    for arm, subset in (("baseline", "v1"), ("candidate", "v2")):
        pattern = arms[arm]["service_regex"] + "(-shadow)?"
        for name in ("fraud-model", f"meshlab-fraud-model-{subset}", "fraud-model-shadow"):
            assert re.fullmatch(pattern, name), (arm, name)
        other = "v2" if subset == "v1" else "v1"
        assert not re.fullmatch(pattern, f"meshlab-fraud-model-{other}")
        assert not re.fullmatch(pattern, "fraud-modelx")
        assert f'destination_version="{subset}"' in chosen.render(arms[arm])[0]
