"""``spec.metrics.collector`` in an experiment file: safe defaults, sizes, one-line field errors."""

from __future__ import annotations

from typing import Any

import pytest

from meshlab.errors import SpecError
from meshlab.spec import parse_experiment
from meshlab.spec.metrics import is_loopback


def experiment(collector: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "meshlab.io/v1alpha1",
        "kind": "Experiment",
        "metadata": {"name": "fraud-shadow", "namespace": "models"},
        "spec": {
            "strategy": "shadow",
            "service": {"host": "fraud-model", "port": 8080},
            "baseline": {"subset": "v1", "labels": {"version": "v1"}},
            "candidate": {"subset": "v2", "labels": {"version": "v2"}},
            "metrics": {"collector": collector},
        },
    }


def test_defaults_are_safe_and_sizes_read_like_kubernetes() -> None:
    spec = parse_experiment(experiment({"maxBody": "8Mi", "memoryBudget": "1Gi"}))
    collector = spec.spec.metrics.collector
    assert collector is not None
    assert collector.listen == "127.0.0.1" and collector.token_env is collector.token_file is None
    assert collector.max_body == 8 * 1024**2 and collector.memory_budget == 1024**3
    assert (collector.request_timeout, collector.max_connections, collector.workers) == (10, 256, 2)


@pytest.mark.parametrize(
    ("collector", "message"),
    [
        (
            {"listen": "0.0.0.0"},
            "spec.metrics.collector: listen 0.0.0.0 is beyond loopback, so a bearer token is "
            "required; set tokenEnv or tokenFile (or listen: 127.0.0.1)",
        ),
        ({"maxBody": "4MB"}, "spec.metrics.collector.maxBody: '4MB' is not a size"),
        ({"maxBody": 10}, "spec.metrics.collector.maxBody: "),
        (
            {"maxBody": "8Mi", "bufferBudget": "4Mi"},
            "spec.metrics.collector: bufferBudget must be at least maxBody",
        ),
        ({"tls": {"certFile": "c"}}, "spec.metrics.collector.tls.keyFile: required field"),
        ({"tokenFle": "x"}, "spec.metrics.collector.tokenFle: unknown field; did you mean"),
    ],
)
def test_bad_collector_specs_name_the_field(collector: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_experiment(experiment(collector))
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.7", False),
        ("collector.models.svc", False),
    ],
)
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
