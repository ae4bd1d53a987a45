"""Parsing what model servers post to the collector into :class:`InferenceEvent` records (pure).

Accepted bodies:

* **KServe payload-logger CloudEvents**, binary mode (what KServe sends): headers ``ce-id``,
  ``ce-type`` (``org.kubeflow.serving.inference.request`` | ``...response``), ``ce-source``,
  ``ce-specversion``, ``ce-time`` and KServe's extensions ``ce-inferenceservicename``,
  ``ce-namespace``, ``ce-component``, ``ce-endpoint`` and ``ce-metadata`` (JSON of the request
  headers listed in the logger's ``metadataHeaders``); the body is the payload.
* the same events in **structured mode** (``content-type: application/cloudevents+json``);
* **plain JSON** records from servers without KServe: ``{"requestId": "...", "prediction": ...}``
  with optional ``"arm"``, ``"latencyMs"``, ``"status"``, ``"time"``.

KServe sets ``ce-id`` from the incoming request's ``Ce-Id`` header, or a fresh UUID
(``pkg/logger/handler.go``: ``getOrCreateID``) -- not from ``x-request-id``. To pair a primary request
with its mirrored copy meshlab therefore reads ``X-Request-Id`` from the ``metadata`` extension (the
rendered logger config lists it in ``metadataHeaders``; Envoy/Istio copy it onto the mirror), and
falls back to ``ce-id``, which pairs only when the client sends a ``ce-id`` header itself.

Predictions: V1 ``{"predictions": [p, ...]}`` -> ``p``; V2 ``{"outputs": [{"data": [p, ...]}]}`` ->
``p``; anything else -> no prediction (kept as compact JSON text, ``""`` for none).

Everything posted is untrusted: JSON goes through :func:`meshlab.collector.safejson.loads`
(bounded depth, finite numbers), ids are at most :data:`MAX_ID_LENGTH` characters, and every
refusal carries a ``reason`` the collector counts. The CloudEvents SDK only ever sees headers and
already-checked envelopes, never raw data it would decode itself.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from cloudevents.core.bindings.http import HTTPMessage, from_http_event

from meshlab.collector.safejson import (
    DEFAULT_MAX_DEPTH,
    JsonRejected,
    is_json_content_type,
    loads,
)
from meshlab.errors import MeshlabError
from meshlab.samples import ALL_ARMS

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
_KINDS: Mapping[str, Literal["request", "response"]] = {
    REQUEST_TYPE: "request",
    RESPONSE_TYPE: "response",
}
REQUEST_ID_HEADER = "x-request-id"
MAX_ID_LENGTH = 256


class EventError(MeshlabError):
    """A posted event cannot be used; the message says which field and why (answered as 400).

    ``reason`` is the code it is counted under (:class:`meshlab.collector.counts.Rejections`).
    """

    def __init__(self, message: str, reason: str = "bad_event") -> None:
        super().__init__(message)
        self.reason = reason


def _checked_json(data: bytes | str, max_depth: int, what: str) -> Any:
    try:
        return loads(data, max_depth=max_depth)
    except JsonRejected as exc:
        raise EventError(f"{what}: {exc}", exc.reason) from None


def _checked_id(value: str, field_name: str) -> str:
    if len(value) > MAX_ID_LENGTH:
        raise EventError(f"{field_name}: longer than {MAX_ID_LENGTH} characters")
    return value


@dataclass(frozen=True)
class InferenceEvent:
    """One half of a logged inference (request or response), or a complete plain-JSON record."""

    kind: Literal["request", "response", "record"]
    event_id: str
    request_id: str
    arm: str
    time: float  # seconds since the epoch
    prediction: str = ""  # the extracted prediction as compact JSON text, "" for none
    has_prediction: bool = False
    latency_ms: float | None = None  # only plain records carry it
    status: int = 200


def extract_prediction(payload: Any) -> tuple[bool, Any]:
    """(found, value): the first prediction of a V1 or V2 inference response."""
    if isinstance(payload, Mapping):
        predictions = payload.get("predictions")
        if isinstance(predictions, list) and predictions:
            return True, predictions[0]
        outputs = payload.get("outputs")
        if isinstance(outputs, list) and outputs and isinstance(outputs[0], Mapping):
            data = outputs[0].get("data")
            if isinstance(data, list) and data:
                return True, data[0]
    return False, None


def _prediction_text(payload: Any) -> tuple[bool, str]:
    found, value = extract_prediction(payload)
    return found, (json.dumps(value, separators=(",", ":")) if found else "")


def _metadata_request_id(metadata: Any, max_depth: int) -> str | None:
    """``X-Request-Id`` from KServe's ``metadata`` extension (JSON of header -> [values])."""
    if isinstance(metadata, str):
        try:
            metadata = loads(metadata, max_depth=max_depth)
        except JsonRejected:
            return None
    if not isinstance(metadata, Mapping):
        return None
    for name, values in metadata.items():
        if str(name).lower() == REQUEST_ID_HEADER:
            if isinstance(values, list) and values and values[0]:
                return str(values[0])
            if isinstance(values, str) and values:
                return values
    return None


def _resolve_arm(
    path_arm: str | None, attrs: Mapping[str, Any], services: Mapping[str, str]
) -> str:
    if path_arm is not None:
        return path_arm
    for key in ("inferenceservicename", "component", "endpoint"):
        value = attrs.get(key)
        if isinstance(value, str) and value in services:
            return services[value]
    raise EventError(
        "cannot tell which arm sent this event: post to /events/baseline, /events/candidate or "
        "/events/control, "
        "or map its inferenceservicename to an arm"
    )


def parse_cloudevent(
    headers: Mapping[str, str],
    body: bytes,
    *,
    path_arm: str | None,
    services: Mapping[str, str],
    received_at: float,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> InferenceEvent:
    """A KServe CloudEvent (binary or structured mode) as an :class:`InferenceEvent`.

    In binary mode only a response's body is read (a request half carries no prediction, so the
    server may drain it unread and pass ``b""``).
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    binary = any(k.startswith("ce-") for k in lowered)
    # The SDK would invent a random id for a missing one, which could never be joined: refuse.
    if binary:
        for name in ("ce-id", "ce-type", "ce-source", "ce-specversion"):
            if not lowered.get(name):
                raise EventError(f"{name}: missing; binary-mode CloudEvents need it")
        sdk_body = b""  # the SDK would json.loads the data unchecked: it gets headers only
    else:
        envelope = _checked_json(body, max_depth, "structured CloudEvent")
        if not isinstance(envelope, Mapping) or not envelope.get("id"):
            raise EventError("id: missing; structured CloudEvents need it")
        sdk_body = body  # already parsed once under the depth and number rules
    try:
        event = from_http_event(HTTPMessage(lowered, sdk_body))
    except Exception as exc:  # the SDK raises several unrelated types for malformed events
        raise EventError(f"not a valid CloudEvent ({type(exc).__name__})") from exc
    attrs = event.get_attributes()
    kind = _KINDS.get(str(attrs.get("type", "")))
    if kind is None:
        raise EventError(f"ce-type {attrs.get('type')!r} is not {REQUEST_TYPE} or {RESPONSE_TYPE}")
    event_id = _checked_id(str(attrs["id"]), "id")
    when = attrs.get("time")
    timestamp = when.timestamp() if isinstance(when, datetime) else received_at
    request_id = _checked_id(
        _metadata_request_id(attrs.get("metadata"), max_depth) or event_id, "metadata.X-Request-Id"
    )
    found, prediction = False, ""
    if kind == "response":
        if binary:
            content_type = lowered.get("content-type") or attrs.get("datacontenttype")
            if body and is_json_content_type(content_type):
                found, prediction = _prediction_text(_checked_json(body, max_depth, "data"))
        else:
            found, prediction = _prediction_text(event.get_data())
    return InferenceEvent(
        kind=kind,
        event_id=event_id,
        request_id=request_id,
        arm=_resolve_arm(path_arm, attrs, services),
        time=timestamp,
        prediction=prediction,
        has_prediction=found,
    )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_record(
    body: bytes,
    *,
    path_arm: str | None,
    services: Mapping[str, str],
    received_at: float,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> InferenceEvent:
    """A plain JSON record ``{"requestId", "prediction", ["arm", "latencyMs", "status", "time"]}``."""
    record = _checked_json(body, max_depth, "body")
    if not isinstance(record, Mapping):
        raise EventError("a plain JSON record must be an object")
    request_id = record.get("requestId")
    if not isinstance(request_id, str) or not request_id:
        raise EventError("requestId: missing; give the x-request-id the client sent")
    _checked_id(request_id, "requestId")
    arm = record.get("arm")
    if arm is not None and arm not in ALL_ARMS:
        raise EventError(f"arm: {arm!r} is not 'baseline', 'candidate' or 'control'")
    latency = record.get("latencyMs")
    if latency is not None and (not _finite(latency) or latency < 0):
        raise EventError("latencyMs: must be a number >= 0")
    status = record.get("status", 200)
    if not isinstance(status, int) or not (status == 0 or 100 <= status <= 599):
        raise EventError("status: must be an HTTP status or 0")
    when = record.get("time", received_at)
    if not _finite(when) or when < 0:
        raise EventError("time: must be seconds since the epoch (a finite number >= 0)")
    has_prediction = "prediction" in record
    return InferenceEvent(
        kind="record",
        event_id=request_id,
        request_id=request_id,
        arm=path_arm or arm or _resolve_arm(None, record, services),
        time=float(when),
        prediction=(
            json.dumps(record["prediction"], separators=(",", ":")) if has_prediction else ""
        ),
        has_prediction=has_prediction,
        latency_ms=float(latency) if latency is not None else None,
        status=status,
    )


def is_binary_request_half(headers: Mapping[str, str]) -> bool:
    """A binary-mode KServe request event: its body (the model input) is never needed."""
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get("ce-type") == REQUEST_TYPE


def parse(
    headers: Mapping[str, str],
    body: bytes,
    *,
    path_arm: str | None = None,
    services: Mapping[str, str] | None = None,
    received_at: float,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> InferenceEvent:
    """Any accepted body: binary or structured CloudEvent, or a plain JSON record."""
    services = services or {}
    lowered = {k.lower(): v for k, v in headers.items()}
    content_type = lowered.get("content-type", "").split(";", 1)[0].strip().lower()
    if any(k.startswith("ce-") for k in lowered) or content_type == "application/cloudevents+json":
        return parse_cloudevent(
            lowered,
            body,
            path_arm=path_arm,
            services=services,
            received_at=received_at,
            max_depth=max_depth,
        )
    return parse_record(
        body, path_arm=path_arm, services=services, received_at=received_at, max_depth=max_depth
    )
