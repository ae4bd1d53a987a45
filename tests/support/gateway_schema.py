"""Strict validation of HTTPRoutes against the vendored Gateway API CRD: schema, defaults and CEL.

What an API server does to a ``gateway.networking.k8s.io`` HTTPRoute, in its order: apply the
schema's structural defaults (``default:``; the CEL rules are written against defaulted objects,
e.g. a backendRef's ``kind: Service``), then check the structural schema strictly (unknown fields,
types, enums, bounds: :func:`tests.support.istio_schema.schema_errors`), plus what that validator
does not cover and the Gateway API relies on (``pattern``, ``minLength``, ``minItems``, unique
``set`` lists and ``map`` list keys), then evaluate every ``x-kubernetes-validations`` CEL rule.
CEL is not interpreted in general: each of the 48 rules of the HTTPRoute CRD is recognised verbatim
(whitespace-normalised) and evaluated by a Python function written from it; any other rule raises
:class:`~tests.support.istio_schema.UnsupportedRule` instead of silently passing.

The CRD is ``<repo>/istio_manifests/crds/gateway-api/gateway.networking.k8s.io_httproutes.yaml``
(provenance in its README).

    gateway_schema_errors(manifest)   every violation as "path: message" (HTTPRoute, v1 or v1beta1)
    validate_gateway(manifest)        raise AssertionError listing them
    gateway_crds()                    (apiVersion, kind) -> {"schema", "plural", "namespaced"}

The rules themselves are in :mod:`tests.support.gateway_cel` (``RULES``, ``rule``; re-exported).
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

from tests.support.gateway_cel import RULES, rule
from tests.support.istio_schema import REPO, load_crds, metadata_errors, schema_errors

CRD_FILE = REPO / "istio_manifests/crds/gateway-api/gateway.networking.k8s.io_httproutes.yaml"


def gateway_crds(path: Path = CRD_FILE) -> dict[tuple[str, str], dict[str, Any]]:
    """Every served (apiVersion, kind) of the Gateway API CRD file, with schema and plural."""
    return load_crds(str(path))


# ------------------------------------------------------------------- defaulting and the walk
def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """``value`` with the schema's ``default`` s filled in, top-down, as the API server does."""
    if isinstance(value, dict):
        out = dict(value)
        for key, sub in (schema.get("properties") or {}).items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = apply_defaults(sub, out[key])
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in out:
                if key not in (schema.get("properties") or {}):
                    out[key] = apply_defaults(additional, out[key])
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


@functools.cache
def _structural(path: str, api_version: str, kind: str) -> dict[str, Any]:
    """The schema without its CEL rules (checked separately, with Gateway API's rule table)."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k != "x-kubernetes-validations"}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return dict(strip(gateway_crds(Path(path))[(api_version, kind)]["schema"]))


def _extra_errors(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    """pattern, minLength, minItems and list uniqueness, which ``schema_errors`` leaves out."""
    errors: list[str] = []
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{path}: shorter than {schema['minLength']} characters")
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set" and len({repr(v) for v in value}) != len(value):
            errors.append(f"{path}: duplicate items in a set")
        if list_type == "map":
            keys = [
                tuple(item.get(k) for k in schema["x-kubernetes-list-map-keys"])
                for item in value
                if isinstance(item, dict)
            ]
            if len(set(keys)) != len(keys):
                errors.append(f"{path}: duplicate map keys {schema['x-kubernetes-list-map-keys']}")
    return errors


def _walk(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    errors = _extra_errors(schema, value, path)
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                errors += _walk(properties[key], item, f"{path}.{key}")
            elif isinstance(additional, dict):
                errors += _walk(additional, item, f"{path}[{key}]")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += _walk(schema["items"], item, f"{path}[{i}]")
    for validation in schema.get("x-kubernetes-validations", ()):
        if not rule(validation["rule"])(value):
            errors.append(
                f"{path}: {validation.get('message', 'failed rule ' + validation['rule'])}"
            )
    return errors


def gateway_schema_errors(manifest: Any, crd: Path = CRD_FILE) -> list[str]:
    """Every violation of a Gateway API object against its CRD, as ``"path: message"`` strings."""
    if not isinstance(manifest, dict):
        return [f"<root>: expected an object, got {type(manifest).__name__}"]
    api_version, kind = str(manifest.get("apiVersion")), str(manifest.get("kind"))
    entry = gateway_crds(crd).get((api_version, kind))
    if entry is None:
        return [f"apiVersion/kind: {api_version}/{kind} is not served by the CRD file {crd}"]
    errors = [
        f"{key}: unknown field"
        for key in manifest
        if key not in ("apiVersion", "kind", "metadata", "spec", "status")
    ]
    errors += metadata_errors(manifest.get("metadata"))
    schema = entry["schema"]
    structural = _structural(str(crd), api_version, kind)
    for key in ("spec", "status"):
        if key not in manifest:
            continue
        value = apply_defaults(schema["properties"][key], manifest[key])
        found = schema_errors(structural["properties"][key], value, key)
        # CEL rules assume a structurally valid object (CEL would not compile against others).
        errors += found or _walk(schema["properties"][key], value, key)
    return errors


def validate_gateway(manifest: dict[str, Any]) -> None:
    """Raise AssertionError naming every violation of ``manifest`` (with its path)."""
    errors = gateway_schema_errors(manifest)
    if errors:
        name = (manifest.get("metadata") or {}).get("name")
        raise AssertionError(
            f"{manifest.get('kind')} {name!r} violates its CRD: " + "; ".join(errors)
        )


def crd_rules(crd: Path = CRD_FILE) -> set[str]:
    """Every CEL rule text in the CRD file (whitespace-normalised), for completeness tests."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            found.update(
                " ".join(r["rule"].split()) for r in node.get("x-kubernetes-validations", ())
            )
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for entry in gateway_crds(crd).values():
        walk(entry["schema"])
    return found


__all__ = ["RULES", "rule"]  # re-exported: their home is gateway_cel
