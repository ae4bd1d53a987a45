"""The one definition of an error (issue 10): 2xx/3xx or expected are answers, all else errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from meshlab.errors import SpecError
from meshlab.metrics.templates import ENVOY, ISTIO, ISTIO_WORKLOAD, ok_status_regex
from meshlab.samples import Sample, error_mask, is_error_status
from meshlab.spec import parse_experiment
from meshlab.spec.analysis import Analysis, Metric
from meshlab.stats import Comparison
from tests.stats.helpers import make_samples


@pytest.mark.parametrize(
    ("status", "expected", "error"),
    [
        (200, (), False),
        (204, (), False),
        (302, (), False),
        (0, (), True),
        (0, (400,), True),
        (400, (), True),
        (404, (), True),
        (429, (), True),
        (400, (400,), False),
        (404, (400,), True),
        (500, (), True),
        (503, (503,), False),
        (101, (), True),
    ],
)
def test_rule(status: int, expected: tuple[int, ...], error: bool) -> None:
    assert is_error_status(status, expected) is error
    assert bool(error_mask(np.array([status], dtype=np.int32), expected)[0]) is error
    if not expected:
        assert Sample(1.0, "baseline", "r", 1.0, status).is_error is error


def test_a_404_candidate_is_aborted_on_errors() -> None:
    """The bug of issue 10: every candidate request 404 used to count as a success."""
    metrics = [Metric(name="errors", type="error-rate", tolerance=0.01)]
    n = 400
    arm = [i % 2 for i in range(n)]
    status = [200 if a == 0 else 404 for a in arm]
    comparison = Comparison(Analysis(metrics=metrics))
    comparison.update(make_samples(arm, [5.0] * n, status))
    assert comparison.assess().verdict.outcome == "abort"
    expected = Comparison(Analysis(metrics=metrics, expected_statuses=[404]))
    expected.update(make_samples(arm, [5.0] * n, status))
    assert expected.assess().verdict.outcome != "abort"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([0], "spec.analysis.expectedStatuses[0]: 0 means a transport failure"),
        ([400, 200], "spec.analysis.expectedStatuses[1]: 200 is not a 4xx or 5xx status"),
        (["x"], "spec.analysis.expectedStatuses[0]"),
    ],
)
def test_expected_statuses_are_validated(
    example_data: dict[str, Any], value: list[Any], message: str
) -> None:
    example_data["spec"]["analysis"]["expectedStatuses"] = value
    with pytest.raises(SpecError) as info:
        parse_experiment(example_data)
    assert str(info.value).startswith(message), str(info.value)


def test_expected_statuses_default_and_parse(example_data: dict[str, Any]) -> None:
    assert parse_experiment(example_data).spec.analysis.expected_statuses == []
    example_data["spec"]["analysis"]["expectedStatuses"] = [422, 400, 422]
    assert parse_experiment(example_data).spec.analysis.expected_statuses == [400, 422]


def test_templates_select_error_statuses_by_the_same_rule() -> None:
    assert ok_status_regex() == "2..|3.."
    assert ok_status_regex([404, 400]) == "2..|3..|400|404"
    values = {"namespace": "models", "service_regex": "fraud", "arm": "v2"}
    query = ISTIO.render_errors(values, [400])
    assert query.endswith('destination_version="v2", response_code!~"2..|3..|400"}')
    assert ISTIO_WORKLOAD.render_errors(values).endswith('response_code!~"2..|3.."}')
    envoy = ENVOY.render_errors({"arm": "outbound|80|v2|fraud"})
    assert envoy == (
        'envoy_cluster_upstream_rq{envoy_cluster_name="outbound|80|v2|fraud", '
        'envoy_response_code!~"2..|3.."}'
    )


def test_the_regex_matches_exactly_the_non_errors() -> None:
    """PromQL anchors regexes; check the regex against the Python rule over every code."""
    import re

    for expected in ((), (400,), (404, 503)):
        pattern = re.compile(f"^(?:{ok_status_regex(expected)})$")
        for code in [0, *range(100, 600)]:
            assert (pattern.match(str(code)) is None) is is_error_status(code, expected), code


def test_a_requests_query_without_a_final_selector_needs_an_explicit_errors_query() -> None:
    import pytest as _pytest

    from meshlab.metrics.templates import QueryTemplate, TemplateError, TemplateSet

    odd = TemplateSet(
        "odd",
        QueryTemplate("r", "sum by (code) (rate(x{c=$arm}[1m]))"),
        QueryTemplate("l", "sum by (le) (rate(y{c=$arm}[1m]))"),
        "code",
    )
    with _pytest.raises(TemplateError, match="give 'errors' explicitly"):
        odd.render_errors({"arm": "a"})
    explicit = TemplateSet(
        "explicit",
        QueryTemplate("r", "sum by (code) (rate(x{c=$arm}[1m]))"),
        QueryTemplate("l", "sum by (le) (rate(y{c=$arm}[1m]))"),
        "code",
        QueryTemplate("e", 'sum(rate(x{c="$arm", code!~"$ok_statuses"}[1m]))'),
    )
    assert explicit.render_errors({"arm": "a"}, [404]) == (
        'sum(rate(x{c="a", code!~"2..|3..|404"}[1m]))'
    )
