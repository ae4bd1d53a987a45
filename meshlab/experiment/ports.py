"""What the controller needs from the edges, as small Protocols (adapters live in ``wiring``).

The controller is written against these so its loop can be tested with a fake clock and scripted
sources, while the real run plugs in Locust, the local Envoy mesh or Kubernetes, and the
sequential statistics. :class:`LiveSamples` (every live source, and their one ordered merge) is
defined in :mod:`meshlab.live`, below the backends that implement it, and re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from meshlab.clock import Clock as Clock  # defined once there; re-exported for the controller
from meshlab.live import LiveSamples as LiveSamples  # defined once there (below the backends)
from meshlab.live import flush_rows as flush_rows
from meshlab.live import silence_of as silence_of
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
