"""KServe logger configuration for both versions (pure builders)."""

from __future__ import annotations

import pytest

from meshlab.collector import (
    arm_by_service,
    collector_from_spec,
    logger_patches,
    logger_patches_from_spec,
    logger_spec,
)
from meshlab.errors import ConfigError
from meshlab.spec.metrics import CollectorSpec


def test_logger_spec_points_each_version_at_its_own_path() -> None:
    assert logger_spec("http://meshlab-collector.models.svc:8080/", "candidate") == {
        "mode": "all",
        "url": "http://meshlab-collector.models.svc:8080/events/candidate",
        "metadataHeaders": ["X-Request-Id"],
    }


def test_logger_patches_for_both_versions() -> None:
    patches = logger_patches(
        {"baseline": "fraud-v1", "candidate": "fraud-v2"}, "models", "http://c.models.svc:8080"
    )
    assert [p["metadata"] for p in patches] == [
        {"name": "fraud-v1", "namespace": "models"},
        {"name": "fraud-v2", "namespace": "models"},
    ]
    assert all(p["apiVersion"] == "serving.kserve.io/v1beta1" for p in patches)
    urls = [p["spec"]["predictor"]["logger"]["url"] for p in patches]
    assert urls == [
        "http://c.models.svc:8080/events/baseline",
        "http://c.models.svc:8080/events/candidate",
    ]
    assert arm_by_service({"baseline": "fraud-v1", "candidate": "fraud-v2"}) == {
        "fraud-v1": "baseline",
        "fraud-v2": "candidate",
    }


@pytest.mark.parametrize("url", ["ftp://x", "collector:8080", "http://"])
def test_bad_collector_urls_say_what_to_give(url: str) -> None:
    with pytest.raises(ConfigError, match="reachable from the model pods"):
        logger_spec(url, "baseline")


def test_both_versions_must_be_named() -> None:
    with pytest.raises(ConfigError, match="must name the baseline and the candidate"):
        logger_patches({"baseline": "fraud-v1"}, "models", "http://c:8080")
    with pytest.raises(ConfigError, match="must name the baseline and the candidate"):
        logger_patches({"baseline": "a", "candidate": "b", "other": "c"}, "models", "http://c")


def test_the_control_gets_its_own_logger_when_named() -> None:
    patches = logger_patches(
        {"baseline": "fraud-v1", "candidate": "fraud-v2", "control": "fraud-v1-control"},
        "models",
        "http://c:8080",
    )
    urls = [p["spec"]["predictor"]["logger"]["url"] for p in patches]
    assert urls == [f"http://c:8080/events/{arm}" for arm in ("baseline", "candidate", "control")]


def test_from_spec() -> None:
    spec = CollectorSpec.model_validate(
        {
            "url": "http://meshlab-collector.models.svc:8080",
            "port": 0,
            "listen": "127.0.0.1",
            "inferenceServices": {"baseline": "fraud-v1", "candidate": "fraud-v2"},
            "ttl": "30s",
        }
    )
    patches = logger_patches_from_spec(spec, "models")
    assert [p["metadata"]["name"] for p in patches] == ["fraud-v1", "fraud-v2"]
    collector = collector_from_spec(spec)
    assert collector.services == {"fraud-v1": "baseline", "fraud-v2": "candidate"}
    assert collector.joiner.ttl == 30.0 and collector.joiner.release == "mirrored"
    with pytest.raises(ConfigError, match="inferenceServices: rendering"):
        logger_patches_from_spec(CollectorSpec(), "models")
