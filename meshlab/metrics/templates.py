"""What to measure: strict PromQL templates per telemetry source, kept apart from the query client.

Two sources, one shape. Each :class:`TemplateSet` has a ``requests`` query (a request counter per
arm, one series per status code) and a ``latency`` query (the cumulative ``_bucket`` series of a
latency histogram in milliseconds, one series per ``le``). Both select the series of ONE arm; the
client runs them once per arm and sums the series itself, so per-series counter resets can be
detected (see :mod:`meshlab.metrics.prometheus`).

``istio`` / ``istio-workload``
    Istio's standard metrics as reported by the *destination* sidecar (``reporter="destination"``):
    a mirrored (shadow) request is never reported by the source, only by the pod that served it.
    An arm is selected by ``destination_version`` (the pods' ``version`` label) or by
    ``destination_workload`` (the Deployment name). ``destination_service_name`` also accepts the
    ``-shadow`` suffix Istio appends to the authority of mirrored requests.
``istio-waypoint`` / ``istio-waypoint-workload``
    The same metrics in Istio's ambient mode, where pods have no sidecar: ztunnel reports only L4
    (TCP) metrics, and the HTTP metrics come from the waypoint proxy that routed the request, with
    ``reporter="waypoint"`` (Istio, "Enable ambient mode": post-migration observability changes).
    The waypoint reports mirrored copies too (it sends them). A separate set, not a regex over both
    reporters: in a mesh where sidecars send through a waypoint both would report one request.

With ``target.routing: gateway-api`` the routes send each arm to its own backend Service
(``meshlab-<service>-<subset>``), so ``$service_regex`` (see :mod:`meshlab.metrics.arms`) accepts
the service's own name and the arm's backend Service name: which of the two a proxy reports
depends on where it reads it (the authority, or the cluster it routed to).
``envoy``
    The local mesh's Envoy (``/stats/prometheus`` of its admin port): the upstream cluster stats of
    the arm's cluster (``outbound|<port>|<subset>|<host>``). Mirrored copies are counted on the
    mirror cluster, like Istio's destination side.

Each set also has an ``errors`` query: the same request counter restricted to the series whose
status code is an error by meshlab's one rule (:func:`meshlab.samples.is_error_status`): neither
2xx nor 3xx nor one of ``spec.analysis.expectedStatuses``. Istio and Envoy report a transport
failure as code ``0``, which the rule always counts. :meth:`TemplateSet.render_errors` fills
``$ok_statuses`` from the expected statuses (:func:`ok_status_regex`).

Rendering is strict: every ``$variable`` must be given, no unknown variable is accepted, and values
are escaped as PromQL string literals, so a label value can never change the query's structure.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from meshlab.errors import ConfigError

_IDENT = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class TemplateError(ConfigError):
    """A query template was rendered with a missing or unknown variable."""


def promql_string(value: str) -> str:
    """``value`` escaped for use inside a double-quoted PromQL string literal."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def promql_regex_literal(value: str) -> str:
    """``value`` as a regular expression that matches exactly itself (RE2 syntax)."""
    return re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", value)


@dataclass(frozen=True)
class QueryTemplate:
    """One PromQL expression with ``$name`` placeholders, rendered strictly."""

    name: str
    text: str

    @property
    def variables(self) -> frozenset[str]:
        """The placeholder names this template needs."""
        found: set[str] = set()
        for match in string.Template.pattern.finditer(self.text):
            named = match.group("named") or match.group("braced")
            if named:
                found.add(named)
        return frozenset(found)

    def render(self, values: Mapping[str, str]) -> str:
        """The query with every placeholder replaced by its escaped value.

        Raises :class:`TemplateError` if a placeholder has no value or a value has no placeholder
        (a typo in a variable name must not silently select nothing).
        """
        needed = self.variables
        missing = sorted(needed - values.keys())
        if missing:
            raise TemplateError(
                f"query template {self.name!r}: no value for ${missing[0]}; "
                f"pass all of {', '.join(sorted(needed))}"
            )
        unknown = sorted(values.keys() - needed)
        if unknown:
            raise TemplateError(
                f"query template {self.name!r}: unknown variable {unknown[0]!r}; "
                f"it uses only {', '.join(sorted(needed))}"
            )
        escaped = {key: promql_string(str(value)) for key, value in values.items()}
        return string.Template(self.text).substitute(escaped)


OK_STATUSES = "ok_statuses"


def ok_status_regex(expected: Collection[int] = ()) -> str:
    """The PromQL regex of the status codes that are not errors: 2xx, 3xx and ``expected``.

    PromQL anchors regexes, so ``2..`` matches exactly the three-digit 2xx codes and never ``0``.
    """
    codes = sorted({int(c) for c in expected if not 200 <= int(c) < 400})
    if any(c == 0 for c in codes):
        raise TemplateError(
            "status 0 (a transport failure) is always an error; it cannot be expected"
        )
    return "|".join(["2..", "3..", *(str(c) for c in codes)])


@dataclass(frozen=True)
class TemplateSet:
    """The queries for one telemetry source and how to read their series."""

    name: str
    requests: QueryTemplate
    latency: QueryTemplate
    status_label: str  # label carrying the HTTP status code on the requests series
    # The requests counter, error statuses only ($ok_statuses). Default: the requests selector
    # with ``<status_label>!~"$ok_statuses"`` added.
    errors: QueryTemplate | None = None

    def __post_init__(self) -> None:
        if not _IDENT.match(self.status_label):
            raise TemplateError(f"template set {self.name!r}: bad label name {self.status_label!r}")
        text = self.requests.text.rstrip()
        if self.errors is None and text.endswith("}"):  # else render_errors says to give one
            derived = f'{text[:-1]}, {self.status_label}!~"${OK_STATUSES}"}}'
            object.__setattr__(self, "errors", QueryTemplate(f"{self.name}.errors", derived))
        if self.requests.variables != self.latency.variables:
            raise TemplateError(
                f"template set {self.name!r}: requests and latency must use the same variables"
            )
        if self.errors is not None and self.errors.variables != self.requests.variables | {
            OK_STATUSES
        }:
            raise TemplateError(
                f"template set {self.name!r}: the errors query must use the requests query's "
                f"variables and ${OK_STATUSES}"
            )

    @property
    def variables(self) -> frozenset[str]:
        return self.requests.variables

    def render(self, values: Mapping[str, str]) -> tuple[str, str]:
        """(requests query, latency query) for one arm."""
        return self.requests.render(values), self.latency.render(values)

    def render_errors(self, values: Mapping[str, str], expected: Collection[int] = ()) -> str:
        """The errors query for one arm, given the analysis' expected statuses."""
        if self.errors is None:
            raise TemplateError(
                f"template set {self.name!r}: its requests query does not end with a selector "
                "'{...}' an errors query could be derived from; give 'errors' explicitly"
            )
        return self.errors.render({**values, OK_STATUSES: ok_status_regex(expected)})


def _istio(name: str, reporter: str, arm_label: str) -> TemplateSet:
    """Istio's standard HTTP metrics of one reporter, one arm selected by ``arm_label``."""
    selector = (
        f'reporter="{reporter}", destination_workload_namespace="$namespace", '
        'destination_service_name=~"$service_regex(-shadow)?", '
        f'{arm_label}="$arm"}}'
    )
    return TemplateSet(
        name=name,
        requests=QueryTemplate(f"{name}.requests", "istio_requests_total{" + selector),
        latency=QueryTemplate(
            f"{name}.latency", "istio_request_duration_milliseconds_bucket{" + selector
        ),
        status_label="response_code",
    )


ISTIO = _istio("istio", "destination", "destination_version")
ISTIO_WORKLOAD = _istio("istio-workload", "destination", "destination_workload")
ISTIO_WAYPOINT = _istio("istio-waypoint", "waypoint", "destination_version")
ISTIO_WAYPOINT_WORKLOAD = _istio("istio-waypoint-workload", "waypoint", "destination_workload")
# How each Istio set tells the arms apart: by the pods' version label, or by their Deployment.
BY_VERSION = frozenset({ISTIO.name, ISTIO_WAYPOINT.name})
BY_WORKLOAD = frozenset({ISTIO_WORKLOAD.name, ISTIO_WAYPOINT_WORKLOAD.name})

ENVOY = TemplateSet(
    name="envoy",
    requests=QueryTemplate(
        "envoy.requests", 'envoy_cluster_upstream_rq{envoy_cluster_name="$arm"}'
    ),
    latency=QueryTemplate(
        "envoy.latency", 'envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="$arm"}'
    ),
    status_label="envoy_response_code",
)

TEMPLATE_SETS: Mapping[str, TemplateSet] = {
    t.name: t for t in (ISTIO, ISTIO_WORKLOAD, ISTIO_WAYPOINT, ISTIO_WAYPOINT_WORKLOAD, ENVOY)
}


def template_set(name: str) -> TemplateSet:
    """The template set called ``name``; an unknown name is an error, never a fallback."""
    try:
        return TEMPLATE_SETS[name]
    except KeyError:
        raise TemplateError(
            f"unknown metrics template set {name!r}; use one of {', '.join(TEMPLATE_SETS)}"
        ) from None


def envoy_cluster_name(port: int, subset: str, host: str) -> str:
    """The name Istio (and the local mesh) give an arm's upstream cluster."""
    return f"outbound|{port}|{subset}|{host}"
