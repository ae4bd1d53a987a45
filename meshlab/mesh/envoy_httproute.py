"""Pure translation of a Gateway API HTTPRoute (GAMMA) into the local mesh's Envoy routes.

The local mesh routes a ``target.routing: gateway-api`` experiment from the objects meshlab renders
for it, the backend Services and the HTTPRoute, the way Istio programs Envoy for a mesh HTTPRoute
(it converts each rule into a virtual-service route), so a step yields the same Envoy
``RouteConfiguration`` as its VirtualService (``envoy_config.route_configuration``); a test compares
the two for every strategy and step. No I/O here.

* Backends: each ``backendRef`` names a per-version Service; its selector picks the version whose
  labels it contains, and the reference becomes that version's cluster
  (``outbound|<port>|<subset>|<host>``), exactly the cluster the DestinationRule subset names.
* Each ``matches`` entry is one Envoy route (ORed); a rule without matches gets the API's default
  ``PathPrefix /``. Rule order is not precedence: the routes are sorted, stably, as Istio sorts
  them (Exact > PathPrefix > RegularExpression path, longer first, then more header matches). ``Exact`` -> ``path``; ``PathPrefix /``
  -> ``prefix: /``; other ``PathPrefix`` -> ``path_separated_prefix`` (whole segments, as Istio);
  ``RegularExpression`` -> ``safe_regex``, except ``<escaped literal>.*``, which is how meshlab writes
  a string prefix (the API has none) and is read back as the ``prefix`` it means; headers likewise.
* Weights: weight-0 backends are dropped; one left is a plain ``cluster`` (its headers on the
  route), several are ``weighted_clusters``. ``ResponseHeaderModifier``/``RequestHeaderModifier``
  on a backend or a rule; ``RequestMirror`` with ``percent``, ``fraction`` or neither (100%) ->
  ``request_mirror_policies`` in parts per million; ``timeouts.request`` -> route timeout (``0s``
  when unset, as istiod); no retry field in the standard channel -> istiod's default retry policy.

Anything else (redirects, rewrites, CORS, query or method matches, non-Service backends) is a
:class:`~meshlab.errors.MeshError` naming the field, never silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from meshlab.errors import MeshError
from meshlab.manifests.gateway import RE2_SPECIAL
from meshlab.mesh.envoy_config import (
    ROUTE_CONFIG_NAME,
    HeaderOps,
    Json,
    apply_header_ops,
    cluster_name,
    find_manifest,
    retry_policy,
    route_configuration,
    subsets_of,
)
from meshlab.spec.base import format_duration

_DURATION_PART = re.compile(r"(\d+)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_HEADER_FILTERS = {"RequestHeaderModifier", "ResponseHeaderModifier"}


def literal_prefix(pattern: str) -> str | None:
    """The prefix a ``<escaped literal>.*`` regex matches, or None for any other regex."""
    if not pattern.endswith(".*"):
        return None
    out, escaped = [], False
    for char in pattern[:-2]:
        if escaped:
            if char not in RE2_SPECIAL:
                return None  # \d, \w, ...: a class, not a literal
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in RE2_SPECIAL:
            return None
        else:
            out.append(char)
    return None if escaped else "".join(out)


def duration_seconds(text: str, where: str) -> float:
    """A Gateway API duration (``1m30s``, ``500ms``) in seconds."""
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise MeshError(f"{where}: '{text}' is not a Gateway API duration")
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)


def service_subsets(
    services: Sequence[Mapping[str, Any]], versions: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """Backend Service name -> the subset whose labels its selector contains (exactly one)."""
    out: dict[str, str] = {}
    for service in services:
        name = str(service["metadata"]["name"])
        selector = service.get("spec", {}).get("selector") or {}
        picked = [
            subset
            for subset, labels in versions.items()
            if all(selector.get(k) == v for k, v in labels.items())
        ]
        if len(picked) != 1:
            raise MeshError(
                f"Service {name}: its selector {selector} picks {len(picked)} versions of the "
                "local mesh; a backend Service must select exactly one version's labels"
            )
        out[name] = picked[0]
    return out


def backend_clusters(
    services: Sequence[Mapping[str, Any]], host: str, versions: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """Backend Service name -> the cluster of the version it selects (``outbound|port|subset|host``)."""
    subsets = service_subsets(services, versions)
    out: dict[str, str] = {}
    for service in services:
        name = str(service["metadata"]["name"])
        for port in service.get("spec", {}).get("ports") or []:
            out[name] = cluster_name(host, int(port["port"]), subsets[name])
    return out


def _string_match(kind: str, value: str, where: str) -> Json:
    if kind == "Exact":
        return {"exact": value}
    if kind == "RegularExpression":
        prefix = literal_prefix(value)
        return {"prefix": prefix} if prefix is not None else {"safe_regex": {"regex": value}}
    raise MeshError(f"{where}.type: '{kind}' is not supported by the local mesh")


def _path_match(path: Mapping[str, Any] | None, where: str) -> Json:
    if path is None:
        return {"prefix": "/"}
    kind, value = path.get("type", "PathPrefix"), str(path.get("value", "/"))
    if kind == "PathPrefix":
        trimmed = value.rstrip("/")
        return {"path_separated_prefix": trimmed} if trimmed else {"prefix": "/"}
    match = _string_match(kind, value, where)
    return {"path": match["exact"]} if "exact" in match else match


def route_match(match: Mapping[str, Any], where: str) -> Json:
    """One HTTPRouteMatch as an Envoy ``RouteMatch``."""
    unknown = set(match) - {"path", "headers"}
    if unknown:
        raise MeshError(f"{where}.{sorted(unknown)[0]}: not supported by the local mesh")
    out = _path_match(match.get("path"), f"{where}.path")
    headers = [
        {
            "name": str(h["name"]),
            "string_match": _string_match(
                h.get("type", "Exact"), str(h["value"]), f"{where}.headers[{i}]"
            ),
        }
        for i, h in enumerate(match.get("headers") or [])
    ]
    if headers:
        out["headers"] = headers
    return out


def _header_modifiers(filters: Sequence[Mapping[str, Any]]) -> HeaderOps:
    """(request add, request remove, response add, response remove) from header modifier filters."""
    ops: HeaderOps = ([], [], [], [])
    for f in filters:
        if f.get("type") not in _HEADER_FILTERS:
            continue
        kind = str(f["type"])
        spec = f[kind[0].lower() + kind[1:]]
        add, remove = (ops[0], ops[1]) if kind == "RequestHeaderModifier" else (ops[2], ops[3])
        for key, action in (
            ("set", "OVERWRITE_IF_EXISTS_OR_ADD"),
            ("add", "APPEND_IF_EXISTS_OR_ADD"),
        ):
            for h in spec.get(key) or []:
                add.append(
                    {
                        "header": {"key": str(h["name"]), "value": str(h["value"])},
                        "append_action": action,
                    }
                )
        remove += [str(h) for h in spec.get("remove") or []]
    return ops


def _cluster(ref: Mapping[str, Any], clusters: Mapping[str, str], where: str) -> str:
    if ref.get("kind", "Service") != "Service" or ref.get("group", "") != "":
        raise MeshError(f"{where}: the local mesh routes to Services only")
    name = str(ref.get("name"))
    if name not in clusters:
        raise MeshError(f"{where}.name: '{name}' is not one of the step's backend Services")
    return clusters[name]


def _mirrors(
    filters: Sequence[Mapping[str, Any]], clusters: Mapping[str, str], where: str
) -> list[Json]:
    policies = []
    for i, f in enumerate(filters):
        if f.get("type") != "RequestMirror":
            continue
        mirror = f["requestMirror"]
        if "fraction" in mirror:
            fraction = mirror["fraction"]
            parts = round(fraction["numerator"] * 1_000_000 / fraction.get("denominator", 100))
        else:
            parts = round(float(mirror.get("percent", 100)) * 10_000)
        policies.append(
            {
                "cluster": _cluster(
                    mirror["backendRef"], clusters, f"{where}.filters[{i}].requestMirror.backendRef"
                ),
                "runtime_fraction": {
                    "default_value": {"numerator": parts, "denominator": "MILLION"}
                },
                "trace_sampled": False,
            }
        )
    return policies


def _check_filters(filters: Sequence[Mapping[str, Any]], allowed: set[str], where: str) -> None:
    for i, f in enumerate(filters):
        if f.get("type") not in allowed:
            raise MeshError(
                f"{where}[{i}].type: '{f.get('type')}' is not supported by the local mesh"
            )


def _precedence(match: Mapping[str, Any]) -> tuple[int, int, int]:
    """Istio's sort key of one match (descending): path kind, path length, header count.

    The API server defaults a missing path to ``PathPrefix /``; Istio converts ``PathPrefix`` to a
    prefix without its trailing slash and ranks Exact (3) > prefix (2) > regex (1).
    """
    path = match.get("path") or {"type": "PathPrefix", "value": "/"}
    kind, value = path.get("type", "PathPrefix"), str(path.get("value", "/"))
    if kind == "PathPrefix" and value != "/":
        value = value.rstrip("/")
    rank = {"Exact": 3, "PathPrefix": 2, "RegularExpression": 1}.get(kind, 0)
    return rank, len(value), len(match.get("headers") or [])


def _rule_routes(
    rule: Mapping[str, Any], clusters: Mapping[str, str], where: str
) -> list[tuple[tuple[int, int, int], Json]]:
    unknown = set(rule) - {"name", "matches", "filters", "backendRefs", "timeouts"}
    if unknown:
        raise MeshError(f"{where}.{sorted(unknown)[0]}: not supported by the local mesh")
    filters = rule.get("filters") or []
    _check_filters(filters, {*_HEADER_FILTERS, "RequestMirror"}, f"{where}.filters")
    refs = rule.get("backendRefs") or []
    weighted: list[tuple[str, int, HeaderOps]] = []
    for i, ref in enumerate(refs):
        at = f"{where}.backendRefs[{i}]"
        _check_filters(ref.get("filters") or [], _HEADER_FILTERS, f"{at}.filters")
        weight = int(ref.get("weight", 1))
        if weight > 0:  # istiod drops weight-0 backends
            ops = _header_modifiers(ref.get("filters") or [])
            weighted.append((_cluster(ref, clusters, at), weight, ops))
    if not weighted:
        raise MeshError(f"{where}.backendRefs: no backend with a weight above 0")
    action: Json = {}
    extra: Json = {}
    if len(weighted) == 1:
        action["cluster"] = weighted[0][0]
        apply_header_ops(extra, weighted[0][2])
    else:
        entries = []
        for cluster, weight, ops in weighted:
            entry: Json = {"name": cluster, "weight": weight}
            apply_header_ops(entry, ops)
            entries.append(entry)
        action["weighted_clusters"] = {"clusters": entries}
    timeout = (rule.get("timeouts") or {}).get("request")
    action["timeout"] = (
        format_duration(duration_seconds(str(timeout), f"{where}.timeouts.request"))
        if timeout
        else "0s"
    )
    action["retry_policy"] = retry_policy(None, where)
    mirrors = _mirrors(filters, clusters, where)
    if mirrors:
        action["request_mirror_policies"] = mirrors
    matches = rule.get("matches") or [{}]
    out = []
    for i, match in enumerate(matches):
        precedence = _precedence(match)
        envoy: Json = {"match": route_match(match, f"{where}.matches[{i}]"), "route": action}
        if rule.get("name"):
            envoy["name"] = str(rule["name"])
        envoy.update(extra)
        apply_header_ops(envoy, _header_modifiers(filters))
        out.append((precedence, envoy))
    return out


def httproute_configuration(
    httproute: Mapping[str, Any],
    clusters: Mapping[str, str],
    host: str,
    name: str = ROUTE_CONFIG_NAME,
) -> Json:
    """The Envoy RouteConfiguration for an HTTPRoute whose backends resolve through ``clusters``."""
    spec = httproute.get("spec") or {}
    if not any(p.get("kind") == "Service" for p in spec.get("parentRefs") or []):
        raise MeshError(
            "HTTPRoute spec.parentRefs: the local mesh routes a Service's traffic (GAMMA)"
        )
    ranked: list[tuple[tuple[int, int, int], Json]] = []
    for i, rule in enumerate(spec.get("rules") or []):
        ranked += _rule_routes(rule, clusters, f"HTTPRoute spec.rules[{i}]")
    # Rule order is not precedence: Istio sorts (stably) by the most specific match first.
    ranked.sort(key=lambda item: tuple(-k for k in item[0]))
    routes = [route for _, route in ranked]
    if not routes:
        raise MeshError("HTTPRoute spec.rules: no rules to translate")
    return {
        "name": name,
        "virtual_hosts": [{"name": host, "domains": ["*"], "routes": routes}],
        "validate_clusters": True,
    }


def step_subsets(
    docs: Sequence[Mapping[str, Any]], versions: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """The subsets a step's objects declare: the DestinationRule's, or those its Services select."""
    if any(d.get("kind") == "DestinationRule" for d in docs):
        return subsets_of(find_manifest(docs, "DestinationRule"))
    picked = service_subsets([d for d in docs if d.get("kind") == "Service"], versions)
    return [s for s in versions if s in picked.values()]


def step_route_configuration(
    docs: Sequence[Mapping[str, Any]], host: str, versions: Mapping[str, Mapping[str, str]]
) -> Json:
    """The Envoy routes of a step in either routing API (VirtualService or HTTPRoute objects)."""
    if any(d.get("kind") == "VirtualService" for d in docs):
        return route_configuration(
            find_manifest(docs, "VirtualService"), find_manifest(docs, "DestinationRule")
        )
    services = [d for d in docs if d.get("kind") == "Service"]
    return httproute_configuration(
        find_manifest(docs, "HTTPRoute"), backend_clusters(services, host, versions), host
    )
