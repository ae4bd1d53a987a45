"""Strict validation of ``coordination.k8s.io/v1`` Leases, as the API server validates them.

A hand-written structural schema of ``io.k8s.api.coordination.v1.LeaseSpec`` (Kubernetes API
reference v1.31) plus the server's semantic checks (``ValidateLeaseSpec``): a positive
``leaseDurationSeconds``, a non-negative ``leaseTransitions``, ``preferredHolder`` only with a
``strategy``. ``acquireTime``/``renewTime`` are ``metav1.MicroTime``: the server decodes them with
Go's ``RFC3339Micro`` layout (exactly six fractional digits) and refuses anything else while
decoding, as it does a value of the wrong JSON type: those come back as ``"decode: ..."`` errors,
which the fake answers 400 BadRequest, as the real server does. Unknown fields are errors (as with
``fieldValidation=Strict``).
"""

from __future__ import annotations

import re
from typing import Any

from tests.support.istio_schema import metadata_errors

_MICRO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$")
_INT32 = (-(2**31), 2**31 - 1)
_FIELDS = {
    "holderIdentity": "string",
    "leaseDurationSeconds": "int32",
    "acquireTime": "MicroTime",
    "renewTime": "MicroTime",
    "leaseTransitions": "int32",
    "strategy": "string",
    "preferredHolder": "string",
}


def _decode_error(path: str, kind: str, value: Any) -> str | None:
    if value is None:
        return None
    if kind == "string" and not isinstance(value, str):
        return f"decode: {path}: cannot unmarshal {type(value).__name__} into a string"
    if kind == "int32" and (
        isinstance(value, bool) or not isinstance(value, int) or not _INT32[0] <= value <= _INT32[1]
    ):
        return f"decode: {path}: cannot unmarshal {value!r} into an int32"
    if kind == "MicroTime" and (not isinstance(value, str) or not _MICRO_TIME.match(value)):
        return f'decode: {path}: parsing time {value!r} as "2006-01-02T15:04:05.000000Z07:00"'
    return None


def lease_errors(manifest: dict[str, Any]) -> list[str]:
    """Every violation of a v1 Lease, as ``"path: message"`` strings (``decode:`` ones first)."""
    errors = [
        f"{key}: unknown field"
        for key in manifest
        if key not in ("apiVersion", "kind", "metadata", "spec")
    ]
    spec = manifest.get("spec", {})
    if not isinstance(spec, dict):
        return [*errors, "decode: spec: cannot unmarshal into a LeaseSpec"]
    errors += [f"spec.{key}: unknown field" for key in spec if key not in _FIELDS]
    decode = [
        e
        for key, kind in _FIELDS.items()
        if (e := _decode_error(f"spec.{key}", kind, spec.get(key))) is not None
    ]
    if decode:
        return decode + errors
    errors += metadata_errors(manifest.get("metadata"))
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        errors.append(
            f"spec.leaseDurationSeconds: Invalid value: {duration}: must be greater than 0"
        )
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        errors.append(
            f"spec.leaseTransitions: Invalid value: {transitions}: "
            "must be greater than or equal to 0"
        )
    if spec.get("preferredHolder") and not spec.get("strategy"):
        errors.append(
            "spec.strategy: Required value: must be specified when preferredHolder is set"
        )
    return errors
