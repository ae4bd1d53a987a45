"""Strict validation of Istio manifests against the openAPIV3Schema of Istio's own CRD file.

This is what an API server with ``fieldValidation=Strict`` does to a custom resource: every field
must be named by the schema (unknown fields are errors, not silently pruned), types, enums, bounds,
``required``, ``oneOf``/``anyOf``/``not`` and ``nullable`` hold, and the ``x-kubernetes-validations``
CEL rules are evaluated. CEL is not interpreted in general: the rules that occur in Istio's
networking CRDs are recognised verbatim and evaluated in Python (:mod:`tests.support.cel_rules`); any other rule raises
:class:`UnsupportedRule` instead of silently passing.

The CRD file is the vendored ``<repo>/istio_manifests/crds/istio/customresourcedefinitions.gen.yaml``
(provenance in its README) unless the environment variable ``MESHLAB_ISTIO_CRDS`` names another one.

    validate_istio(manifest)          raise AssertionError listing every violation with its path
    istio_schema_errors(manifest)     the violations as a list of "path: message" strings
    schema_errors(schema, value, path) the same for any structural schema (used by the fake server)
    crd_errors(manifest, load_crds(f))  the same against the CRDs of another file

On an update (``old``: the stored object) the transition rules, CEL rules naming ``oldSelf``
(e.g. ``self == oldSelf``: an immutable field), are evaluated against the stored value; on create
they are skipped, as the API server does.
"""

from __future__ import annotations

import base64
import functools
import math
import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from tests.support.cel_rules import (
    UnsupportedRule,
    go_duration_seconds,
    rule_check,
    transition_check,
)

REPO = Path(__file__).resolve().parents[2]
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_OBJECT_META = {
    "name",
    "generateName",
    "namespace",
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "ownerReferences",
    "managedFields",
    "selfLink",
}
_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
}


def crd_file() -> Path:
    """The Istio CRD file: ``$MESHLAB_ISTIO_CRDS`` or the copy vendored in ``istio_manifests/crds``."""
    override = os.environ.get("MESHLAB_ISTIO_CRDS")
    return (
        Path(override)
        if override
        else REPO / "istio_manifests/crds/istio/customresourcedefinitions.gen.yaml"
    )


@functools.cache
def load_crds(path: str) -> dict[tuple[str, str], dict[str, Any]]:
    """(group/version, kind) -> {"schema", "plural", "namespaced"} for every served version."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    with open(path, encoding="utf-8") as fh:
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        for doc in yaml.load_all(fh, Loader=loader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if not version.get("served", False):
                    continue
                out[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = {
                    "schema": version["schema"]["openAPIV3Schema"],
                    "plural": spec["names"]["plural"],
                    "namespaced": spec["scope"] == "Namespaced",
                }
    return out


def crds() -> dict[tuple[str, str], dict[str, Any]]:
    """Every served (apiVersion, kind) of the CRD file with its schema and plural."""
    return load_crds(str(crd_file()))


def schema_for(api_version: str, kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of one served kind; KeyError if the CRD file does not serve it."""
    return dict(crds()[(api_version, kind)]["schema"])


def istio_schema_errors(manifest: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """Every violation of ``manifest`` against its CRD, as ``"path: message"`` strings.

    ``old``: the stored object when this is an update (its transition rules are then evaluated).
    """
    return crd_errors(manifest, crds(), str(crd_file()), old)


def crd_errors(
    manifest: dict[str, Any],
    table: dict[tuple[str, str], dict[str, Any]],
    source: str,
    old: dict[str, Any] | None = None,
) -> list[str]:
    """Violations of ``manifest`` against the CRDs of ``table`` (:func:`load_crds` of ``source``)."""
    if not isinstance(manifest, dict):
        return [f"<root>: expected an object, got {type(manifest).__name__}"]
    api_version, kind = manifest.get("apiVersion"), manifest.get("kind")
    entry = table.get((str(api_version), str(kind)))
    if entry is None:
        return [f"apiVersion/kind: {api_version}/{kind} is not served by the CRD file {source}"]
    errors: list[str] = []
    for key in manifest:
        if key not in ("apiVersion", "kind", "metadata", "spec", "status"):
            errors.append(f"{key}: unknown field")
    errors += metadata_errors(manifest.get("metadata"))
    schema = entry["schema"]
    for key in ("spec", "status"):
        if key in manifest:
            before = (old or {}).get(key, NO_OLD) if old is not None else NO_OLD
            errors += schema_errors(schema["properties"][key], manifest[key], key, before)
    return errors


def validate_istio(manifest: dict[str, Any]) -> None:
    """Raise AssertionError naming every schema violation of ``manifest`` (with its path)."""
    errors = istio_schema_errors(manifest)
    if errors:
        name = (manifest.get("metadata") or {}).get("name") if isinstance(manifest, dict) else None
        kind = manifest.get("kind") if isinstance(manifest, dict) else None
        raise AssertionError(f"{kind} {name!r} violates its CRD schema: " + "; ".join(errors))


def metadata_errors(metadata: Any) -> list[str]:
    """The ObjectMeta checks an API server makes on a custom resource's metadata."""
    if not isinstance(metadata, dict):
        return ["metadata: required object"]
    errors = [f"metadata.{key}: unknown field" for key in metadata if key not in _OBJECT_META]
    name = metadata.get("name")
    if not isinstance(name, str) or len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        errors.append(f"metadata.name: {name!r} is not a DNS-1123 subdomain")
    for field in ("labels", "annotations"):
        values = metadata.get(field)
        if values is None:
            continue
        if not isinstance(values, dict):
            errors.append(f"metadata.{field}: expected a map of strings")
            continue
        for key, value in values.items():
            local = str(key).rsplit("/", 1)[-1]
            if not _QUALIFIED_NAME.match(local) or len(local) > 63:
                errors.append(f"metadata.{field}[{key}]: not a qualified name")
            if not isinstance(value, str):
                errors.append(f"metadata.{field}[{key}]: expected a string")
            elif (
                field == "labels"
                and value
                and (len(value) > 63 or not _QUALIFIED_NAME.match(value))
            ):
                errors.append(f"metadata.labels[{key}]: {value!r} is not a valid label value")
    return errors


NO_OLD: Any = object()  # no old value at this path: a create, or a field the update adds


def schema_errors(schema: dict[str, Any], value: Any, path: str, old: Any = NO_OLD) -> list[str]:
    """Violations of ``value`` against a structural schema, each prefixed with its path.

    ``old`` is the stored value at the same path on an update: transition rules (CEL rules that
    name ``oldSelf``) are evaluated only where it exists, as the API server does (on create, and
    for fields the update adds, they are skipped). Object properties and map values correlate by
    key; list items never do here (the vendored CRDs' transition rules sit on objects).
    """
    if value is None:
        return [] if schema.get("nullable") else [f"{path}: must not be null"]
    errors = _type_errors(schema, value, path)
    if errors:
        return errors  # no point checking the fields of a value of the wrong type
    errors += _bounds_errors(schema, value, path)
    if isinstance(value, dict):
        errors += _object_errors(schema, value, path, old if isinstance(old, dict) else {})
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(schema["items"], item, f"{path}[{i}]")
    errors += _combinator_errors(schema, value, path)
    for rule in schema.get("x-kubernetes-validations", ()):
        if "oldSelf" in rule["rule"]:
            failed = old is not NO_OLD and not transition_check(rule["rule"])(value, old)
        else:
            failed = not rule_check(rule["rule"])(value)
        if failed:
            errors.append(f"{path}: {rule.get('message', 'failed rule ' + rule['rule'])}")
    return errors


def _type_errors(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    if schema.get("x-kubernetes-int-or-string"):
        ok = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
        return [] if ok else [f"{path}: expected an integer or a string"]
    expected = schema.get("type")
    checks: dict[str, Callable[[Any], bool]] = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    }
    if expected is None:
        return []
    if expected not in checks:
        raise UnsupportedRule(f"{path}: schema type {expected!r} is not supported")
    return (
        [] if checks[expected](value) else [f"{path}: expected {expected}, got {_json_type(value)}"]
    )


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "integer", float: "number"}.get(
        type(value), type(value).__name__
    )


def _bounds_errors(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    errors: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            errors.append(f"{path}: must be a finite number")
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} is above the maximum {schema['maximum']}")
        low_high = _INT_RANGES.get(schema.get("format", ""))
        if low_high and isinstance(value, int) and not low_high[0] <= value <= low_high[1]:
            errors.append(f"{path}: {value} does not fit in {schema['format']}")
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']} characters")
        errors += _format_errors(schema.get("format"), value, path)
    if isinstance(value, list) and "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: more than {schema['maxItems']} items")
    if (
        isinstance(value, dict)
        and "maxProperties" in schema
        and len(value) > schema["maxProperties"]
    ):
        errors.append(f"{path}: more than {schema['maxProperties']} properties")
    return errors


def _format_errors(fmt: str | None, value: str, path: str) -> list[str]:
    if fmt == "date-time":
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return [f"{path}: {value!r} is not an RFC 3339 date-time"]
    elif fmt == "byte":
        try:
            base64.b64decode(value, validate=True)
        except ValueError:
            return [f"{path}: {value!r} is not base64"]
    return []


def _object_errors(
    schema: dict[str, Any], value: dict[str, Any], path: str, old: dict[str, Any]
) -> list[str]:
    errors = [
        f"{path}.{key}: required field missing"
        for key in schema.get("required", ())
        if key not in value
    ]
    properties = schema.get("properties")
    additional = schema.get("additionalProperties")
    preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
    for key, item in value.items():
        before = old.get(key, NO_OLD)
        if properties is not None and key in properties:
            errors += schema_errors(properties[key], item, f"{path}.{key}", before)
        elif isinstance(additional, dict):
            errors += schema_errors(additional, item, f"{path}[{key}]", before)
        elif not preserve and "type" in schema:
            errors.append(f"{path}.{key}: unknown field")
    return errors


def _combinator_errors(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    # Inside oneOf/anyOf/not Istio's schemas only use "required" (which field of a oneof is set),
    # so a branch is evaluated as a schema of its own, without type.
    errors: list[str] = []
    if "oneOf" in schema:
        passing = sum(not schema_errors(branch, value, path) for branch in schema["oneOf"])
        if passing != 1:
            errors.append(
                f"{path}: must match exactly one of the allowed field combinations "
                f"(oneOf), matched {passing}"
            )
    if "anyOf" in schema and not any(not schema_errors(b, value, path) for b in schema["anyOf"]):
        errors.append(f"{path}: matches none of the allowed field combinations (anyOf)")
    for branch in schema.get("allOf", ()):
        errors += schema_errors(branch, value, path)
    if "not" in schema and not schema_errors(schema["not"], value, path):
        errors.append(f"{path}: uses a forbidden field combination (not)")
    return errors


__all__ = ["UnsupportedRule", "go_duration_seconds"]  # re-exported: their home is cel_rules
