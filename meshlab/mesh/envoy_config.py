"""Pure translation of Istio routing into Envoy configuration, the way istiod does it.

Input: the rendered ``DestinationRule`` and ``VirtualService`` dicts (``meshlab.manifests``).
Output: an Envoy ``RouteConfiguration`` (served to Envoy through file-based RDS) and one static
cluster per subset, named like istiod's ``outbound|<port>|<subset>|<host>``. No I/O here.

What is translated, following istiod's ``pilot/pkg/networking/core/route``:

* routes keep the VirtualService's order; each ``match`` entry becomes one Envoy route (Istio ORs
  them), a route without ``match`` becomes a catch-all ``prefix: /``;
* ``uri`` exact/prefix/regex -> ``path`` / ``prefix`` / ``safe_regex``; ``headers`` (and
  ``withoutHeaders``, inverted) -> header matchers with ``string_match``;
* destinations with weight 0 are dropped; one remaining destination is a plain ``cluster``, several
  are ``weighted_clusters``; per-destination response headers go on the weighted cluster entry (or
  on the route when there is a single destination);
* ``mirror``/``mirrors`` -> ``request_mirror_policies`` with a ``runtime_fraction`` in parts per
  MILLION (percent x 10000), ``trace_sampled: false``;
* ``timeout`` -> route timeout (istiod's default when unset is ``0s``: no timeout); ``retries`` ->
  ``retry_policy`` (istiod's default policy when unset; none when ``attempts`` is 0).

Anything else in a route (fault injection, rewrites, CORS, ...) is rejected with a
:class:`~meshlab.errors.MeshError` naming the field, rather than silently ignored.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from meshlab.errors import MeshError

Json = dict[str, Any]

ROUTE_CONFIG_NAME = "meshlab"
ROUTE_CONFIG_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
MILLION = 1_000_000
# istiod's default retry policy when a route sets none (pilot/pkg/networking/core/route/retry).
DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
DEFAULT_RETRY_ATTEMPTS = 2
_SUPPORTED_ROUTE_KEYS = {
    "name",
    "match",
    "route",
    "mirror",
    "mirrors",
    "mirrorPercentage",
    "mirrorPercent",
    "timeout",
    "retries",
    "headers",
}
_SUPPORTED_MATCH_KEYS = {"name", "uri", "headers", "withoutHeaders", "method", "authority"}


def cluster_name(host: str, port: int, subset: str | None) -> str:
    """istiod's outbound cluster name: ``outbound|8080|v1|fraud-model``."""
    return f"outbound|{port}|{subset or ''}|{host}"


def find_manifest(manifests: Sequence[Mapping[str, Any]], kind: str) -> Mapping[str, Any]:
    """The one manifest of ``kind`` in a step's manifests (MeshError if absent or repeated)."""
    found = [m for m in manifests if m.get("kind") == kind]
    if len(found) != 1:
        raise MeshError(
            f"expected exactly one {kind} among the step's manifests, found {len(found)}"
        )
    return found[0]


def _string_match(value: Any, where: str) -> Json:
    if not isinstance(value, Mapping) or len(value) != 1:
        raise MeshError(f"{where}: expected exactly one of exact, prefix, regex")
    ((kind, text),) = value.items()
    if kind == "exact":
        return {"exact": str(text)}
    if kind == "prefix":
        return {"prefix": str(text)}
    if kind == "regex":
        return {"safe_regex": {"regex": str(text)}}
    raise MeshError(f"{where}: unknown string match '{kind}' (use exact, prefix or regex)")


def _uri_match(value: Any, where: str) -> Json:
    match = _string_match(value, where)
    if "exact" in match:
        return {"path": match["exact"]}
    return match  # "prefix" and "safe_regex" have the same field names on RouteMatch


def _header_matchers(headers: Any, where: str, invert: bool) -> list[Json]:
    if not isinstance(headers, Mapping):
        raise MeshError(f"{where}: expected a mapping of header name to string match")
    out: list[Json] = []
    for name, value in headers.items():
        matcher: Json = {"name": str(name), "string_match": _string_match(value, f"{where}.{name}")}
        if invert:
            matcher["invert_match"] = True
        out.append(matcher)
    return out


def route_match(match: Mapping[str, Any] | None, where: str) -> Json:
    """An Istio HTTPMatchRequest as an Envoy ``RouteMatch`` (``None`` = match everything)."""
    if match is None:
        return {"prefix": "/"}
    unknown = set(match) - _SUPPORTED_MATCH_KEYS
    if unknown:
        raise MeshError(f"{where}.{sorted(unknown)[0]}: not supported by the local mesh")
    out: Json = _uri_match(match["uri"], f"{where}.uri") if "uri" in match else {"prefix": "/"}
    headers: list[Json] = []
    if "headers" in match:
        headers += _header_matchers(match["headers"], f"{where}.headers", invert=False)
    if "withoutHeaders" in match:
        headers += _header_matchers(match["withoutHeaders"], f"{where}.withoutHeaders", invert=True)
    for key, pseudo in (("method", ":method"), ("authority", ":authority")):
        if key in match:
            headers.append(
                {"name": pseudo, "string_match": _string_match(match[key], f"{where}.{key}")}
            )
    if headers:
        out["headers"] = headers
    return out


def _headers_to_add(operations: Mapping[str, Any], where: str) -> tuple[list[Json], list[str]]:
    add: list[Json] = []
    for key, action in (("set", "OVERWRITE_IF_EXISTS_OR_ADD"), ("add", "APPEND_IF_EXISTS_OR_ADD")):
        for name, value in (operations.get(key) or {}).items():
            add.append({"header": {"key": str(name), "value": str(value)}, "append_action": action})
    remove = [str(h) for h in operations.get("remove") or []]
    unknown = set(operations) - {"set", "add", "remove"}
    if unknown:
        raise MeshError(f"{where}.{sorted(unknown)[0]}: expected set, add or remove")
    return add, remove


def _header_ops(headers: Any, where: str) -> tuple[list[Json], list[str], list[Json], list[str]]:
    """(request add, request remove, response add, response remove) from an Istio Headers block."""
    if headers is None:
        return [], [], [], []
    req_add, req_rm = _headers_to_add(headers.get("request") or {}, f"{where}.request")
    resp_add, resp_rm = _headers_to_add(headers.get("response") or {}, f"{where}.response")
    return req_add, req_rm, resp_add, resp_rm


def _destination_cluster(destination: Any, where: str, subsets: set[str]) -> str:
    if not isinstance(destination, Mapping) or "host" not in destination:
        raise MeshError(f"{where}: a destination needs a host")
    port = (destination.get("port") or {}).get("number")
    if not isinstance(port, int):
        raise MeshError(f"{where}.port.number: the local mesh needs an explicit port number")
    subset = destination.get("subset")
    if subset is not None and subset not in subsets:
        raise MeshError(f"{where}.subset: '{subset}' is not a subset of the DestinationRule")
    return cluster_name(str(destination["host"]), port, subset)


HeaderOps = tuple[
    list[Json], list[str], list[Json], list[str]
]  # request add/remove, response add/remove


def apply_header_ops(target: Json, ops: HeaderOps) -> None:
    """Add Envoy header additions/removals to a route or weighted-cluster entry."""
    req_add, req_rm, resp_add, resp_rm = ops
    for key, value in (
        ("request_headers_to_add", req_add),
        ("request_headers_to_remove", req_rm),
        ("response_headers_to_add", resp_add),
        ("response_headers_to_remove", resp_rm),
    ):
        if value:
            target[key] = [*target.get(key, []), *value]


def _mirror_policies(route: Mapping[str, Any], where: str, subsets: set[str]) -> list[Json]:
    mirrors: list[tuple[Any, Any, str]] = []
    if "mirror" in route:
        legacy = route.get("mirrorPercent")
        percent = route.get("mirrorPercentage", {"value": legacy if legacy is not None else 100.0})
        mirrors.append((route["mirror"], percent, f"{where}.mirror"))
    for i, entry in enumerate(route.get("mirrors") or []):
        mirrors.append(
            (
                entry.get("destination"),
                entry.get("percentage", {"value": 100.0}),
                f"{where}.mirrors[{i}]",
            )
        )
    policies: list[Json] = []
    for destination, percent, at in mirrors:
        value = float(percent.get("value", 0.0)) if isinstance(percent, Mapping) else float(percent)
        if not 0.0 <= value <= 100.0:
            raise MeshError(f"{at}: mirror percentage {value} is outside 0..100")
        policies.append(
            {
                "cluster": _destination_cluster(destination, at, subsets),
                "runtime_fraction": {
                    "default_value": {"numerator": round(value * 10_000), "denominator": "MILLION"},
                },
                "trace_sampled": False,
            }
        )
    return policies


def retry_policy(retries: Mapping[str, Any] | None, where: str) -> Json | None:
    """An Istio HTTPRetry as Envoy's retry policy; istiod's default policy when ``retries`` is None."""
    if retries is None:
        return {
            "retry_on": DEFAULT_RETRY_ON,
            "num_retries": DEFAULT_RETRY_ATTEMPTS,
            "retry_host_predicate": [
                {
                    "name": "envoy.retry_host_predicates.previous_hosts",
                    "typed_config": {
                        "@type": "type.googleapis.com/"
                        "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
                    },
                }
            ],
            "host_selection_retry_max_attempts": 5,
        }
    attempts = retries.get("attempts", 0)
    if not isinstance(attempts, int) or attempts < 0:
        raise MeshError(f"{where}.attempts: expected an integer >= 0")
    if attempts == 0:
        return None
    policy: Json = {"retry_on": retries.get("retryOn") or DEFAULT_RETRY_ON, "num_retries": attempts}
    if retries.get("perTryTimeout") is not None:
        policy["per_try_timeout"] = str(retries["perTryTimeout"])
    return policy


def _route_action(route: Mapping[str, Any], where: str, subsets: set[str]) -> tuple[Json, Json]:
    """(Envoy RouteAction, route-level additions such as response headers of a sole destination)."""
    destinations = route.get("route")
    if not isinstance(destinations, list) or not destinations:
        raise MeshError(f"{where}.route: a route needs at least one destination")
    weighted: list[tuple[str, int, Mapping[str, Any] | None, str]] = []
    for i, dest in enumerate(destinations):
        at = f"{where}.route[{i}]"
        weight = dest.get("weight")
        if len(destinations) > 1 and not isinstance(weight, int):
            raise MeshError(f"{at}.weight: several destinations need integer weights")
        if weight == 0:
            continue  # istiod drops weight-0 destinations
        cluster = _destination_cluster(dest.get("destination"), f"{at}.destination", subsets)
        weighted.append(
            (cluster, weight if isinstance(weight, int) else 100, dest.get("headers"), at)
        )
    if not weighted:
        raise MeshError(f"{where}.route: every destination has weight 0")
    if len(destinations) > 1 and sum(w for _, w, _, _ in weighted) != 100:
        raise MeshError(f"{where}.route: destination weights must sum to 100")
    action: Json = {}
    extra: Json = {}
    if len(weighted) == 1:
        cluster, _, headers, at = weighted[0]
        action["cluster"] = cluster
        apply_header_ops(extra, _header_ops(headers, f"{at}.headers"))
    else:
        entries = []
        for cluster, weight, headers, at in weighted:
            entry: Json = {"name": cluster, "weight": weight}
            apply_header_ops(entry, _header_ops(headers, f"{at}.headers"))
            entries.append(entry)
        action["weighted_clusters"] = {"clusters": entries}
    action["timeout"] = str(route["timeout"]) if route.get("timeout") is not None else "0s"
    retry = retry_policy(route.get("retries"), f"{where}.retries")
    if retry is not None:
        action["retry_policy"] = retry
    mirrors = _mirror_policies(route, where, subsets)
    if mirrors:
        action["request_mirror_policies"] = mirrors
    return action, extra


def envoy_routes(route: Mapping[str, Any], where: str, subsets: set[str]) -> list[Json]:
    """One Istio HTTPRoute as Envoy routes: one per ``match`` entry (they are ORed)."""
    unknown = set(route) - _SUPPORTED_ROUTE_KEYS
    if unknown:
        raise MeshError(f"{where}.{sorted(unknown)[0]}: not supported by the local mesh")
    action, extra = _route_action(route, where, subsets)
    matches: list[Mapping[str, Any] | None] = list(route.get("match") or []) or [None]
    out: list[Json] = []
    for i, match in enumerate(matches):
        envoy: Json = {"match": route_match(match, f"{where}.match[{i}]"), "route": action}
        if route.get("name"):
            envoy["name"] = str(route["name"])
        envoy.update(extra)
        apply_header_ops(envoy, _header_ops(route.get("headers"), f"{where}.headers"))
        out.append(envoy)
    return out


def subsets_of(destination_rule: Mapping[str, Any]) -> list[str]:
    """The subset names a DestinationRule declares, in order."""
    return [str(s["name"]) for s in destination_rule.get("spec", {}).get("subsets") or []]


def route_configuration(
    virtual_service: Mapping[str, Any],
    destination_rule: Mapping[str, Any],
    name: str = ROUTE_CONFIG_NAME,
) -> Json:
    """The Envoy RouteConfiguration for a VirtualService (subsets checked against the rule)."""
    spec = virtual_service.get("spec") or {}
    hosts = [str(h) for h in spec.get("hosts") or []]
    if not hosts:
        raise MeshError("VirtualService spec.hosts: at least one host is required")
    subsets = set(subsets_of(destination_rule))
    routes: list[Json] = []
    for i, http in enumerate(spec.get("http") or []):
        routes += envoy_routes(http, f"VirtualService spec.http[{i}]", subsets)
    if not routes:
        raise MeshError("VirtualService spec.http: no HTTP routes to translate")
    # Clients of the local mesh call 127.0.0.1:<port>, so the one virtual host matches any
    # authority; in a cluster istiod lists the service's names in ``domains`` instead.
    return {
        "name": name,
        "virtual_hosts": [{"name": ",".join(hosts), "domains": ["*"], "routes": routes}],
        "validate_clusters": True,
    }


def discovery_response(route_config: Json, version: str) -> Json:
    """The DiscoveryResponse a file-based RDS source reads (``version_info`` identifies the step).

    Envoy ignores an update whose resources are unchanged, and two steps can translate to the same
    routes (a blue/green switch, whose weight-0 baseline is dropped, and ``promoted``). The version
    is therefore also stamped into every route's metadata, which changes no routing decision, so
    each applied step is a real update that Envoy acknowledges.
    """
    stamped = copy.deepcopy(route_config)
    for vhost in stamped.get("virtual_hosts", []):
        for route in vhost.get("routes", []):
            route.setdefault("metadata", {}).setdefault("filter_metadata", {})["meshlab"] = {
                "version": version
            }
    return {"version_info": version, "resources": [{"@type": ROUTE_CONFIG_TYPE, **stamped}]}


def referenced_clusters(route_config: Mapping[str, Any]) -> set[str]:
    """Every cluster a RouteConfiguration routes or mirrors to."""
    names: set[str] = set()
    for vhost in route_config.get("virtual_hosts", []):
        for route in vhost.get("routes", []):
            action = route.get("route", {})
            if "cluster" in action:
                names.add(action["cluster"])
            names.update(c["name"] for c in action.get("weighted_clusters", {}).get("clusters", []))
            names.update(p["cluster"] for p in action.get("request_mirror_policies", []))
    return names


def static_cluster(name: str, address: str, port: int, connect_timeout: str = "2s") -> Json:
    """A STATIC cluster with one loopback endpoint (a version's inbound sidecar listener)."""
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": connect_timeout,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": address, "port_value": port},
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
