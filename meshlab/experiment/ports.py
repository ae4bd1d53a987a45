"""What the controller needs from the edges, as small Protocols (adapters live in ``wiring``).

The controller is written against these so its loop can be tested with a fake clock and scripted
sources, while the real run plugs in Locust, the local Envoy mesh or Kubernetes, and the
sequential statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from meshlab.clock import Clock as Clock  # defined once there; re-exported for the controller
from meshlab.samples import Sample

VerdictName = Literal["promote", "abort", "inconclusive"]


@dataclass(frozen=True)
class Snapshot:
    """The analysis at one look: the overall verdict and each metric as a JSON-ready dict."""

    verdict: VerdictName
    metrics: list[dict[str, Any]]  # the `meshlab analyze --json` metric entries
    n_baseline: int
    n_candidate: int
    reasons: list[str] = field(default_factory=list)
    guarantee: str = ""
    n_control: int = 0  # the control arm's samples (spec.control, issue 13)


class LiveSamples(Protocol):
    """Requests as they complete: load-generator rows and, in shadow mode, the mirrored copies."""

    def poll(self, timeout: float) -> list[Sample]:
        """Samples that arrived since the last call, waiting at most ``timeout`` seconds for some."""
        ...

    @property
    def finished(self) -> bool:
        """True once the source will produce nothing more (load ended or failed)."""
        ...

    def stop(self) -> None:
        """Stop producing (stop the load); safe to call twice."""
        ...

    def after_rollback(self) -> None:
        """The routes are back on the baseline: from now on ``poll`` must not raise for a source
        that failed (the drain only times the last candidate request). A no-op for most sources."""
        ...


class Analyzer(Protocol):
    """The sequential comparison for one phase of the experiment, fed incrementally."""

    def update(self, samples: Sequence[Sample]) -> None: ...

    def snapshot(self) -> Snapshot: ...


class Progress(Protocol):
    """Where the controller reports what it is doing (terminal, quiet, JSON)."""

    def event(self, record: dict[str, Any]) -> None: ...

    def look(
        self,
        step_label: str,
        weight: int,
        mirror: float,
        snapshot: Snapshot,
        step_elapsed: float,
        step_limit: float,
    ) -> None: ...

    def close(self) -> None: ...
