"""KServe payload-logger configuration for both versions (pure builders, no cluster access).

Each version's InferenceService gets ``spec.predictor.logger`` pointing at its own collector path,
so the collector knows the arm without guessing::

    logger: {mode: all, url: http://<collector>/events/<arm>, metadataHeaders: [X-Request-Id]}

``metadataHeaders`` makes KServe copy the client's ``X-Request-Id`` into each event's ``metadata``
extension; that is the id primary and shadow are paired by (KServe's ``ce-id`` is a fresh UUID
unless the client sent a ``Ce-Id`` header). KServe matches these names against Go's canonical
header form, hence ``X-Request-Id`` spelled exactly so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from meshlab.errors import ConfigError
from meshlab.samples import ARMS
from meshlab.spec.metrics import CollectorSpec

LoggerMode = Literal["all", "request", "response"]
METADATA_HEADERS = ("X-Request-Id",)


def collector_event_url(collector_url: str, arm: str) -> str:
    """Where ``arm``'s logger posts: ``<collector_url>/events/<arm>``."""
    parts = urlsplit(collector_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"collector url {collector_url!r} must be http(s)://host[:port], reachable from the "
            "model pods (e.g. http://meshlab-collector.models.svc:8080)"
        )
    if arm not in ARMS:
        raise ConfigError(f"arm {arm!r} is not 'baseline' or 'candidate'")
    return f"{collector_url.rstrip('/')}/events/{arm}"


def logger_spec(collector_url: str, arm: str, mode: LoggerMode = "all") -> dict[str, Any]:
    """The ``spec.predictor.logger`` block of one version's InferenceService."""
    return {
        "mode": mode,
        "url": collector_event_url(collector_url, arm),
        "metadataHeaders": list(METADATA_HEADERS),
    }


def logger_patches(
    inference_services: Mapping[str, str],
    namespace: str,
    collector_url: str,
    mode: LoggerMode = "all",
) -> list[dict[str, Any]]:
    """Merge patches (``serving.kserve.io/v1beta1``) enabling the logger on both versions.

    ``inference_services`` maps ``baseline`` and ``candidate`` to their InferenceService names.
    """
    if set(inference_services) != set(ARMS):
        raise ConfigError("inference_services must name exactly the baseline and the candidate")
    return [
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": inference_services[arm], "namespace": namespace},
            "spec": {"predictor": {"logger": logger_spec(collector_url, arm, mode)}},
        }
        for arm in ARMS
    ]


def arm_by_service(inference_services: Mapping[str, str]) -> dict[str, str]:
    """InferenceService name -> arm, for events posted to ``/events`` without an arm path."""
    return {name: arm for arm, name in inference_services.items()}


def logger_patches_from_spec(spec: CollectorSpec, namespace: str) -> list[dict[str, Any]]:
    """:func:`logger_patches` from ``spec.metrics.collector`` (needs ``url`` and the services)."""
    if spec.url is None or spec.inference_services is None:
        raise ConfigError(
            "spec.metrics.collector: rendering the KServe logger needs 'url' (how the model pods "
            "reach the collector) and 'inferenceServices: {baseline: ..., candidate: ...}'"
        )
    return logger_patches(spec.inference_services.model_dump(), namespace, spec.url)
