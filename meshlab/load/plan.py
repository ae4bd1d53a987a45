"""What a load run is asked to do (:class:`LoadPlan`) and how it went (:class:`LoadResult`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from meshlab.load.config import LocustConfig
from meshlab.samples import Sample


@dataclass(frozen=True)
class LoadPlan:
    """One load run: what to send (``config``), where (``url``), how long, and on how many workers.

    ``duration`` bounds a constant-rate run; with steps or a ramp the shape ends the run and
    ``duration`` is only a safety limit. ``workers=0`` runs a single local Locust process.
    """

    config: LocustConfig
    url: str
    duration: float
    workers: int = 0
    locustfiles: tuple[Path, ...] = ()  # empty: meshlab's own (loadtests/inference.py's twin)


@dataclass(frozen=True)
class LoadResult:
    """How a run went. ``lost`` = requests Locust counted minus rows recorded (should be 0)."""

    samples: int
    unattributed: tuple[Sample, ...]
    late: tuple[Sample, ...]
    locust_requests: int | None
    returncode: int | None
    stopped_early: bool

    @property
    def recorded(self) -> int:
        return self.samples + len(self.unattributed) + len(self.late)

    @property
    def lost(self) -> int | None:
        return None if self.locust_requests is None else self.locust_requests - self.recorded
