"""The one place that maps the spec's names to implementations: routing APIs, mesh targets, sources.

    registry            spec field              name -> implementation ("module:attribute")
    ROUTING             spec.target.routing     istio, gateway-api -> RoutingPlan renderers
    MESH                spec.target.kind        local, kubernetes  -> MeshBackend classes
    METRICS             spec.metrics.source     samples, prometheus, collector -> source factories
    SAMPLES             (mirrored predictions)  tap, kserve-logger  -> mirrored-sample sources

Adding a backend is one module plus one line here. The spec validates its names against these
tables (so ``routing: foo`` fails at load time with the known names listed, before anything runs),
which is why this module sits below the spec and names its implementations as strings: they are
imported on first use only, so ``meshlab --help`` and the spec never load Kubernetes, Envoy or
Prometheus code. A test imports every entry and checks its interface, so a typo here fails CI.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from meshlab.errors import ConfigError, SpecError


@dataclass(frozen=True)
class Registry:
    """Names of one kind of backend, each naming its implementation as ``module:attribute``."""

    what: str  # "routing API", used in messages
    field: str  # the spec field that holds the name
    entries: Mapping[str, str]  # name -> "package.module:attribute[.attribute]"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.entries))

    def unknown(self, name: object) -> str:
        """The one-line message for a name this registry does not know."""
        return f"unknown {self.what} {name!r}; known: {', '.join(self.names)}"

    def check(self, name: str) -> str:
        """``name`` if known, else :class:`SpecError` naming the field and the known names."""
        if name not in self.entries:
            raise SpecError(self.field, self.unknown(name))
        return name

    def load(self, name: str) -> object:
        """Import and return the implementation registered as ``name``."""
        module, _, attribute = self.entries[self.check(name)].partition(":")
        try:
            found: object = importlib.import_module(module)
            for part in attribute.split("."):  # "Class.factory" names a classmethod
                found = getattr(found, part)
            return found
        except (ImportError, AttributeError) as exc:
            raise ConfigError(
                f"{self.field}: the {self.what} '{name}' is registered as "
                f"{self.entries[name]}, which cannot be imported ({exc})"
            ) from exc


ROUTING = Registry(
    "routing API",
    "spec.target.routing",
    {
        "istio": "meshlab.manifests.istio:render_istio",
        "gateway-api": "meshlab.manifests.gateway:render_gateway",
    },
)
MESH = Registry(
    "target",
    "spec.target.kind",
    {
        "local": "meshlab.mesh.local:LocalMesh",
        "kubernetes": "meshlab.mesh.kubernetes:KubernetesMesh",
    },
)
METRICS = Registry(
    "metrics source",
    "spec.metrics.source",
    {
        "samples": "meshlab.experiment.live_sources:samples_source",
        "prometheus": "meshlab.experiment.live_sources:prometheus_source",
        "collector": "meshlab.experiment.live_sources:collector_source",
    },
)
SAMPLES = Registry(
    "mirrored-sample source",
    "spec.metrics.collector",
    {
        "tap": "meshlab.mesh.tap:TapReader",
        "kserve-logger": "meshlab.collector.live:CollectorLiveSamples",
    },
)

# A routing renderer: RoutingPlan -> the Kubernetes objects of one step, in apply order.
RoutingRenderer = Callable[[Any], list[dict[str, Any]]]


def routing_renderer(name: str) -> RoutingRenderer:
    """The renderer of the routing API ``name`` (``spec.target.routing``)."""
    renderer = ROUTING.load(name)
    if not callable(renderer):
        raise ConfigError(f"{ROUTING.field}: {ROUTING.entries[name]} is not a renderer")
    return cast(RoutingRenderer, renderer)


def mesh_backend(name: str) -> type[Any]:
    """The mesh backend class of the target ``name`` (``spec.target.kind``)."""
    backend = MESH.load(name)
    if not isinstance(backend, type):
        raise ConfigError(f"{MESH.field}: {MESH.entries[name]} is not a class")
    return backend


def metrics_source(name: str) -> Callable[..., Any]:
    """The live-source factory of ``spec.metrics.source`` ``name`` (see live_sources)."""
    factory = METRICS.load(name)
    if not callable(factory):
        raise ConfigError(f"{METRICS.field}: {METRICS.entries[name]} is not a factory")
    return cast(Callable[..., Any], factory)
