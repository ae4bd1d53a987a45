"""The interface every mesh backend implements (local Envoy, Kubernetes/Istio).

A backend is built for one experiment and applies whole steps: the DestinationRule and
VirtualService a step's builders produced. Applying is all-or-nothing: after ``apply`` returns the
mesh routes exactly as the manifests say; if it raises, the previous step is still in force.
``rollback`` must work from any state, including after a crash of an earlier meshlab process, and is
what signal handlers call, so it must not depend on anything but the backend's own connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from meshlab.manifests import Manifest, Step


@dataclass(frozen=True)
class RoutingState:
    """What the mesh currently routes for an experiment, as read back from the mesh itself."""

    experiment: str
    step: str  # Step.name: "1", "2", ..., "promoted", "rollback"
    applied_at: float  # seconds since the epoch


@runtime_checkable
class MeshBackend(Protocol):
    """Apply an experiment's routing, read it back, and always be able to roll back."""

    name: str

    def apply(self, step: Step, manifests: Sequence[Manifest]) -> None:
        """Make the mesh route as ``manifests`` say (all or nothing)."""
        ...

    def status(self) -> RoutingState | None:
        """The step in force for this experiment, or None if meshlab's routes are absent."""
        ...

    def rollback(self) -> None:
        """Send all traffic to the baseline now (no mirror, no candidate route)."""
        ...

    def close(self) -> None:
        """Release connections and processes; leaves routing as it is."""
        ...
