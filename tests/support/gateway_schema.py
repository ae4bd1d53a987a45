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
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.istio_schema import (
    REPO,
    UnsupportedRule,
    go_duration_seconds,
    load_crds,
    metadata_errors,
    schema_errors,
)

CRD_FILE = REPO / "istio_manifests/crds/gateway-api/gateway.networking.k8s.io_httproutes.yaml"
Rule = Callable[[Any], bool]


def gateway_crds(path: Path = CRD_FILE) -> dict[tuple[str, str], dict[str, Any]]:
    """Every served (apiVersion, kind) of the Gateway API CRD file, with schema and plural."""
    return load_crds(str(path))


# ------------------------------------------------------------------------------ the CEL rules
def _has(obj: Any, key: str) -> bool:
    return isinstance(obj, dict) and key in obj


def _ns_empty(p: dict[str, Any]) -> bool:
    return not _has(p, "namespace") or p["namespace"] == ""


def _section_empty(p: dict[str, Any]) -> bool:
    return not _has(p, "sectionName") or p["sectionName"] == ""


def _same_parent(p1: dict[str, Any], p2: dict[str, Any]) -> bool:
    return (
        p1["group"] == p2["group"]
        and p1["kind"] == p2["kind"]
        and p1["name"] == p2["name"]
        and (
            (_ns_empty(p1) and _ns_empty(p2))
            or (
                _has(p1, "namespace")
                and _has(p2, "namespace")
                and p1["namespace"] == p2["namespace"]
            )
        )
    )


def _same_section(p1: dict[str, Any], p2: dict[str, Any]) -> bool:
    return (_section_empty(p1) and _section_empty(p2)) or (
        _has(p1, "sectionName")
        and _has(p2, "sectionName")
        and p1["sectionName"] == p2["sectionName"]
    )


def _parent_sections_given(refs: list[dict[str, Any]]) -> bool:
    return all(
        (_section_empty(p1) == _section_empty(p2)) if _same_parent(p1, p2) else True
        for p1 in refs
        for p2 in refs
    )


def _parent_sections_unique(refs: list[dict[str, Any]]) -> bool:
    return all(
        sum(_same_parent(p1, p2) and _same_section(p1, p2) for p2 in refs) == 1 for p1 in refs
    )


_SAME_PARENT = (
    "p1.group == p2.group && p1.kind == p2.kind && p1.name == p2.name && (((!has(p1.__namespace__) "
    "|| p1.__namespace__ == '') && (!has(p2.__namespace__) || p2.__namespace__ == '')) || "
    "(has(p1.__namespace__) && has(p2.__namespace__) && p1.__namespace__ == p2.__namespace__ ))"
)
_MATCHES_SUM = " + ".join(f"(self.size() > {i} ? self[{i}].matches.size() : 0)" for i in range(16))
_ONE_PATH_PREFIX = (
    "((size(self.matches) != 1 || !has(self.matches[0].path) || "
    "self.matches[0].path.type != 'PathPrefix') ? false : true) : true"
)


def _prefix_replacing(filters: Any, key: str) -> int:
    return sum(
        1
        for f in filters
        if _has(f, key)
        and _has(f[key], "path")
        and f[key]["path"]["type"] == "ReplacePrefixMatch"
        and _has(f[key]["path"], "replacePrefixMatch")
    )


def _one_path_prefix(rule: dict[str, Any]) -> bool:
    matches = rule["matches"]
    return (
        len(matches) == 1
        and _has(matches[0], "path")
        and matches[0]["path"]["type"] == "PathPrefix"
    )


def _rule_filter_needs_prefix(key: str) -> Rule:
    def check(rule: dict[str, Any]) -> bool:
        if _has(rule, "filters") and _prefix_replacing(rule["filters"], key) == 1:
            return _one_path_prefix(rule)
        return True

    return check


def _backend_filter_needs_prefix(key: str) -> Rule:
    def check(rule: dict[str, Any]) -> bool:
        refs = rule.get("backendRefs")
        if _has(rule, "backendRefs") and (
            sum(_has(b, "filters") and _prefix_replacing(b["filters"], key) == 1 for b in refs) == 1
        ):
            return _one_path_prefix(rule)
        return True

    return check


_PATH_CHARS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$")


def _exact_or_prefix(check: Callable[[str], bool]) -> Rule:
    return lambda path: check(path["value"]) if path["type"] in ("Exact", "PathPrefix") else True


def _timeouts(t: dict[str, Any]) -> bool:
    if not (_has(t, "request") and _has(t, "backendRequest")):
        return True
    request = go_duration_seconds(t["request"])
    return not (request != 0 and go_duration_seconds(t["backendRequest"]) > request)


_FILTER_FIELDS = {
    "cors": "CORS",
    "requestHeaderModifier": "RequestHeaderModifier",
    "responseHeaderModifier": "ResponseHeaderModifier",
    "requestMirror": "RequestMirror",
    "requestRedirect": "RequestRedirect",
    "urlRewrite": "URLRewrite",
    "extensionRef": "ExtensionRef",
}


def _filter_rules() -> dict[str, Rule]:
    out: dict[str, Rule] = {}
    for field, kind in _FILTER_FIELDS.items():
        out[f"!(has(self.{field}) && self.type != '{kind}')"] = lambda f, field=field, kind=kind: (
            not (_has(f, field) and f["type"] != kind)
        )
        out[f"!(!has(self.{field}) && self.type == '{kind}')"] = lambda f, field=field, kind=kind: (
            not (not _has(f, field) and f["type"] == kind)
        )
    for kind in (
        "CORS",
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestRedirect",
        "URLRewrite",
    ):
        out[f"self.filter(f, f.type == '{kind}').size() <= 1"] = lambda fs, kind=kind: (
            sum(f["type"] == kind for f in fs) <= 1
        )
    for name in ("ReplaceFullPath", "ReplacePrefixMatch"):
        field = name[0].lower() + name[1:]
        out[f"self.type == '{name}' ? has(self.{field}) : true"] = (
            lambda p, name=name, field=field: _has(p, field) if p["type"] == name else True
        )
        out[f"has(self.{field}) ? self.type == '{name}' : true"] = (
            lambda p, name=name, field=field: p["type"] == name if _has(p, field) else True
        )
    return out


def _path_rules() -> dict[str, Rule]:
    guard = "(self.type in ['Exact','PathPrefix']) ? "
    out: dict[str, Rule] = {
        guard + "self.value.startsWith('/') : true": _exact_or_prefix(lambda v: v.startswith("/")),
        guard
        + 'self.value.matches(r"""^(?:[-A-Za-z0-9/._~!$&\'()*+,;=:@]|[%][0-9a-fA-F]{2})+$""") : true': (
            _exact_or_prefix(lambda v: _PATH_CHARS.search(v) is not None)
        ),
        "self.type in ['Exact','PathPrefix'] || self.type == 'RegularExpression'": (
            lambda p: p["type"] in ("Exact", "PathPrefix", "RegularExpression")
        ),
    }
    for text in ("//", "/./", "/../", "%2f", "%2F", "#"):
        out[guard + f"!self.value.contains('{text}') : true"] = _exact_or_prefix(
            lambda v, text=text: text not in v
        )
    for text in ("/..", "/."):
        out[guard + f"!self.value.endsWith('{text}') : true"] = _exact_or_prefix(
            lambda v, text=text: not v.endswith(text)
        )
    return out


def _rules() -> dict[str, Rule]:
    redirect_exclusive = (
        "(has(self.backendRefs) && size(self.backendRefs) > 0) ? (!has(self.filters) || "
        "self.filters.all(f, !has(f.requestRedirect))): true"
    )
    out: dict[str, Rule] = {
        f"self.all(p1, self.all(p2, {_SAME_PARENT} ? ((!has(p1.sectionName) || p1.sectionName == '') "
        "== (!has(p2.sectionName) || p2.sectionName == '')) : true))": _parent_sections_given,
        f"self.all(p1, self.exists_one(p2, {_SAME_PARENT} && (((!has(p1.sectionName) || "
        "p1.sectionName == '') && (!has(p2.sectionName) || p2.sectionName == '')) || "
        "(has(p1.sectionName) && has(p2.sectionName) && p1.sectionName == p2.sectionName))))": (
            _parent_sections_unique
        ),
        f"{_MATCHES_SUM} <= 128": lambda rules: sum(len(r["matches"]) for r in rules[:16]) <= 128,
        redirect_exclusive: lambda r: (
            (not _has(r, "filters") or all(not _has(f, "requestRedirect") for f in r["filters"]))
            if _has(r, "backendRefs") and len(r["backendRefs"]) > 0
            else True
        ),
        "(size(self.group) == 0 && self.kind == 'Service') ? has(self.port) : true": lambda ref: (
            _has(ref, "port") if len(ref["group"]) == 0 and ref["kind"] == "Service" else True
        ),
        "!(self.exists(f, f.type == 'RequestRedirect') && self.exists(f, f.type == 'URLRewrite'))": (
            lambda fs: (
                not (
                    any(f["type"] == "RequestRedirect" for f in fs)
                    and any(f["type"] == "URLRewrite" for f in fs)
                )
            )
        ),
        "!('*' in self && self.size() > 1)": lambda items: not ("*" in items and len(items) > 1),
        "!(has(self.percent) && has(self.fraction))": lambda m: (
            not (_has(m, "percent") and _has(m, "fraction"))
        ),
        "self.numerator <= self.denominator": lambda f: f["numerator"] <= f["denominator"],
        "!(has(self.request) && has(self.backendRequest) && duration(self.request) != "
        "duration('0s') && duration(self.backendRequest) > duration(self.request))": _timeouts,
    }
    for key, what in (("requestRedirect", "RequestRedirect"), ("urlRewrite", "URLRewrite")):
        inner = (
            f"f, has(f.{key}) && has(f.{key}.path) && f.{key}.path.type == 'ReplacePrefixMatch' "
            f"&& has(f.{key}.path.replacePrefixMatch)"
        )
        out[f"(has(self.filters) && self.filters.exists_one({inner})) ? {_ONE_PATH_PREFIX}"] = (
            _rule_filter_needs_prefix(key)
        )
        out[
            "(has(self.backendRefs) && self.backendRefs.exists_one(b, (has(b.filters) && "
            f"b.filters.exists_one({inner})) )) ? {_ONE_PATH_PREFIX}"
        ] = _backend_filter_needs_prefix(key)
        del what
    out.update(_filter_rules())
    out.update(_path_rules())
    return out


RULES: dict[str, Rule] = {" ".join(k.split()): v for k, v in _rules().items()}


def rule(text: str) -> Rule:
    """The Python evaluation of one CEL rule of the CRD; UnsupportedRule if it is not known."""
    try:
        return RULES[" ".join(text.split())]
    except KeyError:
        raise UnsupportedRule(
            f"CEL rule not understood by the Gateway API validator: {text!r}"
        ) from None


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
