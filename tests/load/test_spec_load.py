"""The ``load`` section: defaults, derived values, and one-line field-path errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshlab.errors import SpecError
from meshlab.spec import Load, parse_experiment
from meshlab.spec.load import parse_extractor

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fraud-v2.yaml"


def with_load(load: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    data["spec"]["load"] = load
    return data


@pytest.mark.parametrize(
    ("load", "path", "words"),
    [
        ({"protocol": "v3"}, "spec.load.protocol", "'v2', 'v1' or 'json'"),
        ({"rps": 0}, "spec.load.rps", "greater than 0"),
        ({"extractor": "outputs[x]"}, "spec.load.extractor", "stuck at character 8"),
        ({"path": "v2/x"}, "spec.load.path", "must start with '/'"),
        ({"headers": {"x-request-id": "a"}}, "spec.load.headers.x-request-id", "set by meshlab"),
        ({"protocol": "json"}, "spec.load.path", "protocol json needs 'path'"),
        ({"steps": [{"rps": 10, "duration": "abc"}]}, "spec.load.steps[0].duration", "duration"),
        ({"usres": 3}, "spec.load.usres", "did you mean 'users'"),
        (
            {"steps": [{"rps": 1, "duration": "1s"}], "ramp": {"toRps": 5, "duration": "5s"}},
            "spec.load.ramp",
            "either 'steps' or 'ramp'",
        ),
    ],
)
def test_bad_load_names_the_field(load: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_experiment(with_load(load))
    message = str(info.value)
    assert info.value.path == path, message
    assert words in message
    assert "\n" not in message


def test_defaults_per_protocol() -> None:
    assert Load().request_path == "/v2/models/model/infer"
    assert Load().extractor_path == "outputs[0].data[0]"
    v1 = Load(protocol="v1", model="fraud")
    assert (v1.request_path, v1.extractor_path) == ("/v1/models/fraud:predict", "predictions[0]")
    assert Load(protocol="json", path="/p").extractor_path == ""


def test_shapes_set_peak_rate_and_duration() -> None:
    load = parse_experiment(
        with_load({"steps": [{"rps": 10, "duration": "5s"}, {"rps": 40, "duration": "1m"}]})
    ).spec.load
    assert (load.peak_rps, load.total_duration) == (40, 65)
    ramp = Load.model_validate({"ramp": {"fromRps": 50, "toRps": 5, "duration": "30s"}})
    assert (ramp.peak_rps, ramp.total_duration) == (50, 30)


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("outputs[0].data[0]", ("outputs", 0, "data", 0)),
        ("predictions[0]", ("predictions", 0)),
        ("", ()),
        ("[1].a-b[2]", (1, "a-b", 2)),
    ],
)
def test_extractor_paths(text: str, steps: tuple[str | int, ...]) -> None:
    assert parse_extractor(text) == steps


@pytest.mark.parametrize("text", [".a", "a..b", "a b", "a[x]", "[0]b", "a[-1]"])
def test_bad_extractor_paths(text: str) -> None:
    with pytest.raises(ValueError, match="is not a path like"):
        parse_extractor(text)
