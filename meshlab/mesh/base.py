"""The interface every mesh backend implements (local Envoy, Kubernetes with Istio or Gateway API).

A backend is built for one experiment and applies whole steps, each given as the mesh-neutral
:class:`~meshlab.manifests.routing.RoutingPlan`; the backend renders its own objects from it in the
experiment's routing API (``routing_renderer(spec.target.routing)`` of :mod:`meshlab.registry`).
Applying is all-or-nothing: after ``apply`` returns the mesh routes exactly as the plan says; if it
raises, the previous step is still in force. Each backend class also has ``for_run(experiment,
RunContext) -> MeshRun``, the uniform factory ``meshlab start`` calls through the registry.
``rollback`` must work from any state, including after a crash of an earlier meshlab process, and is
what signal handlers call, so it must not depend on anything but the backend's own connection.

``faults`` reports the components of the mesh that failed during the run (a process that died or
stopped answering), each with the :data:`FaultRole` that decides the verdict: a failing candidate is
a regression (abort, exit 1); the baseline, the router (outbound proxy), the load generator or the
metrics source failing is an infrastructure failure (exit 4). The controller asks at every look.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from meshlab.manifests.routing import RoutingPlan
from meshlab.samples import Sample


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


@dataclass(frozen=True)
class RunContext:
    """What ``meshlab start`` knows about where a run happens: every backend's ``for_run`` takes it."""

    spec_dir: Path  # the spec file's directory (relative paths in the spec)
    run_dir: Path  # the backend's own directory under the run directory
    kubeconfig: str | None = None  # --kubeconfig / --context override spec.target (clusters)
    context: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class MeshRun:
    """A backend ready to route, with what the run reads from it.

    ``mirrored`` drains the candidate's mirrored copies the backend itself captured (the local
    tap; ``[]`` where another source collects them); ``url`` is where load goes, if the backend
    knows (the local outbound Envoy; None for a cluster: ``--url`` says).
    """

    mesh: MeshBackend
    mirrored: Callable[[], list[Sample]]
    url: str | None


@runtime_checkable
class MeshBackend(Protocol):
    """Apply an experiment's routing, read it back, and always be able to roll back."""

    name: str

    def apply(self, plan: RoutingPlan) -> None:
        """Make the mesh route as ``plan`` says (all or nothing)."""
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
