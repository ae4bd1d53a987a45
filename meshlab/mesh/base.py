"""The interface every mesh backend implements (local Envoy, Kubernetes/Istio).

A backend is built for one experiment and applies whole steps: the DestinationRule and
VirtualService a step's builders produced. Applying is all-or-nothing: after ``apply`` returns the
mesh routes exactly as the manifests say; if it raises, the previous step is still in force.
``rollback`` must work from any state, including after a crash of an earlier meshlab process, and is
what signal handlers call, so it must not depend on anything but the backend's own connection.

``faults`` reports the components of the mesh that failed during the run (a process that died or
stopped answering), each with the :data:`FaultRole` that decides the verdict: a failing candidate is
a regression (abort, exit 1); the baseline, the router (outbound proxy), the load generator or the
metrics source failing is an infrastructure failure (exit 4). The controller asks at every look.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from meshlab.manifests import Manifest, Step


@dataclass(frozen=True)
class RoutingState:
    """What the mesh currently routes for an experiment, as read back from the mesh itself."""

    experiment: str
    step: str  # Step.name: "1", "2", ..., "promoted", "rollback"
    applied_at: float  # seconds since the epoch


FaultRole = Literal["candidate", "baseline", "control", "router", "load", "metrics"]


@dataclass(frozen=True)
class Fault:
    """One component of the experiment that failed, first seen at ``since`` (epoch seconds).

    ``role`` decides the verdict (``candidate`` -> abort, exit 1; anything else -> infrastructure
    failure, exit 4); ``component`` and ``detail`` make the sentence a person reads, e.g.
    ``candidate model server (pid 4242) killed by signal 9``.
    """

    role: FaultRole
    component: str  # "candidate model server (pid 4242)", "candidate sidecar Envoy (pid 4243)"
    detail: str  # "killed by signal 9", "stopped answering for 3.0s", "exited with code 1"
    since: float

    def describe(self) -> str:
        return f"{self.component} {self.detail}"


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

    def faults(self) -> list[Fault]:
        """Components of the mesh that failed (died, stopped answering); [] while healthy.

        Never raises and never blocks for long: the controller calls it at every look.
        """
        ...

    def close(self) -> None:
        """Release connections and processes; leaves routing as it is."""
        ...
