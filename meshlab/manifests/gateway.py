"""Gateway API rendering of a routing plan: ``RoutingPlan -> Services, HTTPRoute`` (GAMMA mesh routing).

The HTTPRoute is ``gateway.networking.k8s.io/v1`` with the service's own Service as its
``parentRef`` (the GAMMA profile: it routes mesh traffic addressed to that Service). The Gateway API
has no subsets, so each version gets a backend Service, ``meshlab-<service>-<subset>``, selecting the
version's pod labels (merged over the parent Service's selector when the caller knows it); weights
go on ``backendRefs``, shadow copies are ``RequestMirror`` filters with ``percent`` (or ``fraction``
for a fractional percentage), and each backend sets the arm header with a ``ResponseHeaderModifier``.
Every object validates against the HTTPRoute CRD's schema and CEL rules (tested for every strategy
and step).

Where the two APIs differ, the rendering keeps Istio's meaning, so both route the same requests:

* a string ``prefix`` (header or path) has no Gateway API equivalent (``PathPrefix`` matches whole
  path segments, headers have no prefix match), so it is written as the ``RegularExpression``
  ``<escaped prefix>.*``; a path prefix ``/`` is ``PathPrefix /``;
* ``service.timeout`` is ``timeouts.request``, in the Gateway API's duration syntax (``500ms``);
* rule order is not precedence in the Gateway API (Istio sorts rules Exact > PathPrefix > regex
  path, then by length, then by header count), so when a matched rule tests the path by regex the
  catch-all rule matches ``RegularExpression /.*``, which ranks below it, instead of the default
  ``PathPrefix /``, which would rank above it.

What the Gateway API (v1.6 standard channel) cannot say is a :class:`~meshlab.errors.ConfigError`
naming the field and the fix, never dropped: a retry policy, a gateway other than ``mesh``, a host
that is not a Kubernetes Service name, a path with a query.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshlab.errors import ConfigError
from meshlab.manifests.meta import Manifest, object_metadata
from meshlab.manifests.routing import (
    Arm,
    Backend,
    Condition,
    Match,
    Mirror,
    RoutingPlan,
    Rule,
    VersionRef,
    step_plan,
)
from meshlab.manifests.steps import Step
from meshlab.spec import Experiment

API_VERSION = "gateway.networking.k8s.io/v1"
RE2_SPECIAL = set("\\.+*?()|[]{}^$")
CATCH_ALL_REGEX = {"type": "RegularExpression", "value": "/.*"}
_DURATION_UNITS = (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))


def escape_regex(text: str) -> str:
    """``text`` as an RE2 pattern matching it literally (only metacharacters are escaped)."""
    return "".join("\\" + c if c in RE2_SPECIAL else c for c in text)


def gateway_duration(seconds: float, field: str) -> str:
    """Seconds in the Gateway API duration syntax (GEP-2257): ``"1m30s"``, ``"500ms"``."""
    millis = round(seconds * 1000)
    if abs(seconds * 1000 - millis) > 1e-6 or millis < 0:
        raise ConfigError(f"{field}: {seconds}s is not a whole number of milliseconds")
    if millis == 0:
        return "0s"
    parts = []
    for unit, size in _DURATION_UNITS:
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    if any(len(p.rstrip("hms")) > 5 for p in parts):
        raise ConfigError(f"{field}: {seconds}s is too long for a Gateway API duration")
    return "".join(parts)


def parent_service(plan: RoutingPlan) -> tuple[str, str]:
    """(name, namespace) of the Service whose traffic the HTTPRoute routes, from ``service.host``."""
    labels = plan.host.split(".")
    if len(labels) > 2 and labels[2] != "svc":
        raise ConfigError(
            f"spec.service.host: '{plan.host}' is not a Kubernetes Service name; with "
            "target.routing: gateway-api the HTTPRoute attaches to a Service (GAMMA): write "
            "'<service>' or '<service>.<namespace>.svc.cluster.local'"
        )
    namespace = labels[1] if len(labels) > 1 else plan.namespace
    if namespace != plan.namespace:
        raise ConfigError(
            f"spec.service.host: the Service is in namespace '{namespace}' but the experiment in "
            f"'{plan.namespace}'; meshlab's HTTPRoute lives beside its Service: set "
            f"metadata.namespace: {namespace}"
        )
    return labels[0], namespace


def backend_service_name(plan: RoutingPlan, version: VersionRef) -> str:
    """The per-version Service, ``meshlab-<service>-<subset>`` (<= 63 characters).

    Prefixed so it never collides with a user's own per-version Service (``fraud-model-v1``).
    """
    name, _ = parent_service(plan)
    return f"meshlab-{name[: 54 - len(version.subset)].rstrip('-')}-{version.subset}"


def backend_services(
    plan: RoutingPlan,
    parent_selector: Mapping[str, str] | None = None,
    target_port: int | str | None = None,
) -> list[Manifest]:
    """One Service per version, selecting its pods.

    The Service selects ``parent_selector`` (the parent Service's selector, when known) plus the
    version's labels; without it the version's labels alone must select only this service's pods.
    ``target_port`` is the parent Service's target port (default: the service port).
    """
    out: list[Manifest] = []
    for version in plan.versions:
        metadata = object_metadata(plan, backend_service_name(plan, version), step=False)
        metadata["labels"]["meshlab.io/arm"] = version.arm
        port: dict[str, Any] = {
            "name": "http",
            "port": plan.port,
            "targetPort": target_port if target_port is not None else plan.port,
            "protocol": "TCP",
            "appProtocol": "http",
        }
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": metadata,
                "spec": {
                    "type": "ClusterIP",
                    "selector": {**(parent_selector or {}), **version.label_map},
                    "ports": [port],
                },
            }
        )
    return out


def _backend_ref(plan: RoutingPlan, arm: Arm) -> dict[str, Any]:
    return {
        "group": "",
        "kind": "Service",
        "name": backend_service_name(plan, plan.version(arm)),
        "port": plan.port,
    }


def _backend(plan: RoutingPlan, backend: Backend, weighted: bool) -> dict[str, Any]:
    out = _backend_ref(plan, backend.arm)
    if weighted:
        out["weight"] = backend.weight
    out["filters"] = [
        {
            "type": "ResponseHeaderModifier",
            "responseHeaderModifier": {
                "set": [{"name": k, "value": v} for k, v in backend.response_headers]
            },
        }
    ]
    return out


def _mirror(plan: RoutingPlan, mirror: Mirror) -> dict[str, Any]:
    spec: dict[str, Any] = {"backendRef": _backend_ref(plan, mirror.arm)}
    if float(mirror.percent).is_integer():
        spec["percent"] = int(mirror.percent)
    else:
        # Same resolution as Envoy's runtime fraction (parts per million).
        numerator, denominator = round(mirror.percent * 10_000), 1_000_000
        while numerator % 10 == 0 and denominator > 100:
            numerator, denominator = numerator // 10, denominator // 10
        spec["fraction"] = {"numerator": numerator, "denominator": denominator}
    return {"type": "RequestMirror", "requestMirror": spec}


def _header_match(name: str, condition: Condition, field: str) -> dict[str, str]:
    if condition.kind == "exact":
        if not condition.value:
            raise ConfigError(f"{field}.exact: the Gateway API cannot match an empty header value")
        return {"type": "Exact", "name": name, "value": condition.value}
    pattern = condition.value if condition.kind == "regex" else escape_regex(condition.value) + ".*"
    return {"type": "RegularExpression", "name": name, "value": pattern}


def _path_match(condition: Condition, field: str) -> dict[str, str]:
    if condition.kind == "regex":
        return {"type": "RegularExpression", "value": condition.value}
    if "?" in condition.value:
        raise ConfigError(
            f"{field}.{condition.kind}: '{condition.value}' has a query; the Gateway API "
            "matches the path only (use a queryParams-free path, or target.routing: istio)"
        )
    if condition.kind == "exact":
        return {"type": "Exact", "value": condition.value}
    if condition.value == "/":
        return {"type": "PathPrefix", "value": "/"}
    return {"type": "RegularExpression", "value": escape_regex(condition.value) + ".*"}


def _match(match: Match, field: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if match.path is not None:
        out["path"] = _path_match(match.path, f"{field}.uri")
    if match.headers:
        out["headers"] = [
            _header_match(name, c, f"{field}.headers.{name}") for name, c in match.headers
        ]
    return out


def _rule(plan: RoutingPlan, rule: Rule) -> dict[str, Any]:
    out: dict[str, Any] = {"name": rule.name}
    if rule.matches:
        out["matches"] = [_match(m, rule.origin or "spec") for m in rule.matches]
    mirrors = [_mirror(plan, m) for m in rule.mirrors if m.percent > 0]
    if mirrors:
        out["filters"] = mirrors
    weighted = len(rule.backends) > 1
    out["backendRefs"] = [_backend(plan, b, weighted) for b in rule.backends]
    if plan.timeout is not None:
        out["timeouts"] = {"request": gateway_duration(plan.timeout, "spec.service.timeout")}
    return out


def _check(plan: RoutingPlan) -> None:
    if plan.retry is not None:
        raise ConfigError(
            "spec.service.retries: the Gateway API (standard channel) has no retry policy; remove "
            "it (the mesh's default retries apply) or use target.routing: istio"
        )
    for gateway in plan.gateways or ():
        if gateway != "mesh":
            raise ConfigError(
                f"spec.service.gateways: '{gateway}' is an Istio gateway; with target.routing: "
                "gateway-api meshlab routes mesh traffic only (the HTTPRoute's parent is the "
                "Service): remove it and attach your own HTTPRoute to the Gateway"
            )


def _regex_path(rule: dict[str, Any]) -> str | None:
    for match in rule.get("matches", []):
        if match.get("path", {}).get("type") == "RegularExpression":
            return str(match["path"]["value"])
    return None


def http_route(plan: RoutingPlan) -> Manifest:
    """The HTTPRoute of a step: its parent is the service's Service, one rule per plan rule."""
    _check(plan)
    name, _ = parent_service(plan)
    rules = [_rule(plan, rule) for rule in plan.rules]
    # Rule order is not precedence in the Gateway API: a more specific match wins, and Istio ranks
    # path matches Exact > PathPrefix > RegularExpression, then by length. The catch-all (default
    # match PathPrefix /) would outrank a rule matching the path by regex, so then the catch-all
    # matches every path by regex too ("/.*", 3 characters; longer patterns rank first, equal ones
    # keep rule order).
    regexes = [(r, p) for r, p in zip(plan.rules[:-1], rules[:-1], strict=True) if _regex_path(p)]
    if regexes:
        catch_all = rules[-1]
        rest = {k: v for k, v in catch_all.items() if k != "name"}
        rules[-1] = {
            "name": catch_all["name"],
            "matches": [{"path": dict(CATCH_ALL_REGEX)}],
            **rest,
        }
        for rule, rendered in regexes:
            if len(_regex_path(rendered) or "") < len(CATCH_ALL_REGEX["value"]):
                raise ConfigError(
                    f"{rule.origin}.uri.regex: a path regex shorter than 3 characters would rank "
                    "below meshlab's catch-all '/.*' in the Gateway API; write a longer pattern"
                )
    return {
        "apiVersion": API_VERSION,
        "kind": "HTTPRoute",
        "metadata": object_metadata(plan),
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": name, "port": plan.port}],
            "rules": rules,
        },
    }


def render_gateway(plan: RoutingPlan) -> list[Manifest]:
    """The backend Services first (routes must not reference missing backends), then the HTTPRoute."""
    route = http_route(plan)
    return [*backend_services(plan), route]


def gateway_manifests(experiment: Experiment, step: Step) -> list[Manifest]:
    """The Gateway API objects of a step: per-version Services, then the HTTPRoute."""
    return render_gateway(step_plan(experiment, step))
