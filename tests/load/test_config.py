"""LocustConfig from the spec and from environment variables (the by-hand path)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshlab.errors import ConfigError
from meshlab.load.config import LocustConfig, config_from_env
from meshlab.spec import Load

from .conftest import FEATURES_JSONL, ROOT


def test_round_trips_through_json() -> None:
    config = LocustConfig.from_spec(
        Load.model_validate({"steps": [{"rps": 5, "duration": "2s"}], "headers": {"a": "b"}})
    )
    assert LocustConfig.from_json(config.to_json()) == config
    assert config.rps == 5 and config.steps == [(5.0, 2.0)]


def test_relative_payloads_resolve_against_the_spec_directory(tmp_path: Path) -> None:
    config = LocustConfig.from_spec(Load(payloads="data.jsonl"), base_dir=tmp_path)
    assert config.payloads == str(tmp_path / "data.jsonl")


def test_environment_overrides_and_protocol_defaults() -> None:
    env = {
        "MESHLAB_PROTOCOL": "v1",
        "MESHLAB_MODEL": "fraud",
        "MESHLAB_RPS": "max",
        "MESHLAB_PAYLOADS": str(FEATURES_JSONL),
        "MESHLAB_HEADERS": '{"x-user": "a"}',
    }
    config = config_from_env(env)
    assert (config.path, config.extractor) == ("/v1/models/fraud:predict", "predictions[0]")
    assert config.rps is None and config.headers == {"x-user": "a"}
    pinned = config_from_env(env, protocol="v2")  # a protocol-specific locustfile wins
    assert pinned.path == "/v2/models/fraud/infer"


def test_experiment_file_supplies_the_load_section() -> None:
    config = config_from_env(
        {"MESHLAB_EXPERIMENT": str(ROOT / "examples" / "fraud-v2.yaml"), "MESHLAB_USERS": "3"}
    )
    assert config.users == 3 and config.protocol == "v2"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"MESHLAB_RPS": "fast"}, "MESHLAB_RPS"),
        ({"MESHLAB_HEADERS": "[1]"}, "MESHLAB_HEADERS"),
        ({"MESHLAB_EXTRACTOR": "a..b"}, "extractor"),
        ({"MESHLAB_LOAD_CONFIG": "/nonexistent/c.json"}, "cannot read"),
    ],
)
def test_bad_environment_is_a_config_error(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        config_from_env(env)


def test_users_for_rate_under_a_shape() -> None:
    config = LocustConfig(rps=100, users=20)  # 5 rps per user
    assert [config.users_for(r) for r in (5, 12, 100, 500)] == [1, 3, 20, 20]
