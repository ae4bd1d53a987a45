"""The experiment spec: the reference example is accepted, and each bad input names its field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshlab.errors import SpecError
from meshlab.spec import load_experiment, parse_experiment
from tests.conftest import EXAMPLE


def test_reference_example_is_accepted_as_written() -> None:
    exp = load_experiment(EXAMPLE)
    assert exp.metadata.name == "fraud-v2"
    assert exp.spec.canary is not None and exp.spec.canary.steps == [5, 10, 25, 50, 100]
    assert exp.spec.shadow is not None and exp.spec.shadow.mirror_percent == 100
    tolerances = {m.name: m.tolerance for m in exp.spec.analysis.metrics}
    assert tolerances == pytest.approx({"latency-p50": 0.10, "errors": 0.005, "divergence": 0.02})
    assert exp.spec.analysis.metrics[0].quantile == 0.5


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node: Any = data
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    last = keys[-1]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


_DELETE = object()

BAD = [
    ("spec.canary.steps", [5, 10, 120], "spec.canary.steps[2]: 120 is above 100"),
    ("spec.canary.steps", [5, -1], "spec.canary.steps[1]: -1 is below 0"),
    ("spec.canary.steps", [50, 10], "spec.canary.steps[1]: 10 is below the previous step (50)"),
    ("spec.canary.steps", [5, 10.5], "spec.canary.steps[1]: 10.5 is not an integer percent"),
    ("spec.canary.stepz", [5], "spec.canary.stepz: unknown field; did you mean 'steps'?"),
    (
        "spec.shadow.mirrorPercent",
        100.5,
        "spec.shadow.mirrorPercent: input should be less than or equal to 100",
    ),
    ("spec.strategy", "rolling", "spec.strategy: 'rolling' is not allowed"),
    ("metadata.name", "Fraud_V2", "metadata.name: 'Fraud_V2' is not a DNS-1123 label"),
    ("spec.baseline.subset", "V1", "spec.baseline.subset: 'V1' is not a DNS-1123 label"),
    ("spec.service.host", "fraud model", "spec.service.host: 'fraud model' is not a valid host"),
    ("spec.service.port", 70000, "spec.service.port: input should be less than or equal to 65535"),
    ("spec.analysis.alpha", 0.5, "spec.analysis.alpha: input should be less than 0.5"),
    ("spec.analysis.beta", 0, "spec.analysis.beta: input should be greater than 0"),
    (
        "spec.analysis.metrics.0.quantile",
        1.0,
        "spec.analysis.metrics[0].quantile: input should be less than 1",
    ),
    (
        "spec.analysis.metrics.1.tolerance",
        "half",
        "spec.analysis.metrics[1].tolerance: 'half' is not a percentage",
    ),
    (
        "spec.analysis.metrics.1.tolerance",
        "150%",
        "spec.analysis.metrics[1].tolerance: 1.5 is not below 100%",
    ),
    (
        "spec.analysis.metrics.2.name",
        "latency-p50",
        "spec.analysis.metrics[2].name: duplicate metric name",
    ),
    ("spec.analysis.metrics.1.type", "p99", "spec.analysis.metrics[1].type: 'p99' is not allowed"),
    (
        "spec.abtest.match.0.headers",
        {"X-User": {"exact": "a"}},
        "spec.abtest.match[0].headers.X-User: header name 'X-User' must be lowercase",
    ),
    (
        "spec.abtest.match.0.headers",
        {"x-user": {"exact": "a", "prefix": "b"}},
        "spec.abtest.match[0].headers.x-user: give exactly one of exact, prefix, regex",
    ),
    ("spec.candidate.subset", "v1", "spec.candidate.subset: 'v1' is also the baseline's subset"),
    ("spec.service", _DELETE, "spec.service: required field is missing"),
    ("apiVersion", "meshlab.io/v2", "apiVersion: 'meshlab.io/v2' is not allowed"),
    ("spec.load", {"rps": float("inf")}, "spec.load.rps: input should be a finite number"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[b[2].split(":")[0] for b in BAD])
def test_bad_spec_names_field_path(
    example_data: dict[str, Any], path: str, value: Any, message: str
) -> None:
    _set(example_data, path, value)
    with pytest.raises(SpecError) as info:
        parse_experiment(example_data)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_only_the_chosen_strategy_block_is_required(example_data: dict[str, Any]) -> None:
    for block in ("canary", "abtest"):
        del example_data["spec"][block]
    example_data["spec"]["strategy"] = "shadow"
    exp = parse_experiment(example_data)
    assert exp.spec.strategy == "shadow"
    example_data["spec"]["strategy"] = "canary"
    with pytest.raises(SpecError, match=r"^spec\.canary: strategy canary needs a 'canary' block"):
        parse_experiment(example_data)


def test_tolerance_forms_are_equivalent(example_data: dict[str, Any]) -> None:
    for form in ("0.5%", 0.005, "0.005"):
        example_data["spec"]["analysis"]["metrics"][1]["tolerance"] = form
        assert parse_experiment(example_data).spec.analysis.metrics[1].tolerance == pytest.approx(
            0.005
        )


def test_shadow_mirror_percent_accepts_fractions(example_data: dict[str, Any]) -> None:
    example_data["spec"]["shadow"]["mirrorPercent"] = 12.5
    assert parse_experiment(example_data).spec.shadow_block.mirror_percent == 12.5


def test_validate_cli_prints_one_line_and_exits_2(
    tmp_path: Path, example_data: dict[str, Any]
) -> None:
    example_data["spec"]["canary"]["steps"] = [5, 10, 120]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(example_data))
    proc = subprocess.run(
        [sys.executable, "-m", "meshlab", "validate", "-f", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == "meshlab: error: spec.canary.steps[2]: 120 is above 100\n"
    assert "Traceback" not in proc.stdout + proc.stderr


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("apiVersion: meshlab.io/v1alpha1\nkind: [Experiment\n")
    with pytest.raises(Exception, match=r"not valid YAML at line 3"):
        load_experiment(bad)


def test_port_placeholders_per_name(example_data: dict[str, Any]) -> None:
    from meshlab.spec.local import substitute

    example_data["spec"]["local"] = {
        "baseline": {
            "command": ["mlserver", "start", "{here}/m", "--grpc", "{port:grpc}"],
            "readyUrl": "http://127.0.0.1:{port}/v2/models/m/ready",
            "env": {"MLSERVER_HTTP_PORT": "{port}", "MLSERVER_METRICS_PORT": "{port:metrics}"},
        },
        "candidate": {"url": "http://127.0.0.1:9001"},
    }
    version = parse_experiment(example_data).spec.local.baseline  # type: ignore[union-attr]
    assert version.port_names == ("", "grpc", "metrics")
    ports = {"": 8080, "grpc": 8081, "metrics": 8082}
    assert [substitute(t, ports, "py", "/h") for t in version.templated] == [
        "mlserver",
        "start",
        "/h/m",
        "--grpc",
        "8081",
        "http://127.0.0.1:8080/v2/models/m/ready",
        "8080",
        "8082",
    ]


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        (
            "{prot}",
            "spec.local.baseline.command[1]: unknown placeholder '{prot}'; use {port}, {port:NAME}",
        ),
        ("{port:GRPC}", "spec.local.baseline.command[1]: '{port:GRPC}': a port name is lowercase"),
    ],
)
def test_unknown_placeholders_are_named(
    example_data: dict[str, Any], arg: str, message: str
) -> None:
    example_data["spec"]["local"] = {
        "baseline": {"command": ["x", arg], "readyUrl": "http://127.0.0.1:{port}/"},
        "candidate": {"url": "http://127.0.0.1:9001"},
    }
    with pytest.raises(SpecError) as info:
        parse_experiment(example_data)
    assert str(info.value).startswith(message), str(info.value)


def test_every_error_meshlab_writes_itself_is_shown_as_written() -> None:
    """A custom error type missing from loading._OWN_MESSAGES gets pydantic's "(got <input>)"
    suffix: for a model-level check the input is the whole spec, dumped into the one line."""
    import re

    from meshlab.spec import loading

    spec_dir = Path(loading.__file__).parent
    used = {
        m.group(1)
        for f in spec_dir.glob("*.py")
        for m in re.finditer(r'PydanticCustomError\(\s*"([a-z_0-9]+)"', f.read_text())
    }
    assert used and used <= loading._OWN_MESSAGES, sorted(used - loading._OWN_MESSAGES)
