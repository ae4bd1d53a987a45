"""The CEL rules of the vendored HTTPRoute CRD, each evaluated by a Python function written from it.

Each of the 48 ``x-kubernetes-validations`` rules of the Gateway API's HTTPRoute CRD is recognised
verbatim (whitespace-normalised) in :data:`RULES`; :func:`rule` returns its evaluation, or raises
:class:`~tests.support.cel_rules.UnsupportedRule` for a rule it does not know instead of letting it
pass. :mod:`tests.support.gateway_schema` applies them where the CRD places them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.support.cel_rules import UnsupportedRule, go_duration_seconds

Rule = Callable[[Any], bool]


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
