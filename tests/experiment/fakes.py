"""Fakes for the controller's seams: a clock, a mesh, a sample source and a scripted analyzer.

Only the controller's loop is under test here; the real seams (Envoy, Locust, statistics) are
exercised end to end in tests/experiment/test_end_to_end.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshlab.experiment.ports import Snapshot, VerdictName
from meshlab.manifests import RoutingPlan
from meshlab.mesh import RoutingState
from meshlab.samples import Sample


@dataclass
class FakeClock:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class FakeFault:
    """The ``meshlab.mesh.base.Fault`` contract of issue 17 (the controller reads it by duck type)."""

    role: str
    component: str
    detail: str
    since: float

    def describe(self) -> str:
        return f"{self.component} {self.detail}"


@dataclass
class FakeMesh:
    name: str = "fake"
    applied: list[str] = field(default_factory=list)
    fail_on: str | None = None
    fail_rollback: bool = False
    clock: FakeClock | None = None
    failures: list[FakeFault] = field(default_factory=list)  # each reported from its ``since``

    def faults(self) -> list[FakeFault]:
        now = self.clock() if self.clock is not None else float("inf")
        return [f for f in self.failures if f.since <= now]

    def apply(self, plan: RoutingPlan) -> None:
        if plan.step == self.fail_on:
            from meshlab.errors import MeshError

            raise MeshError(f"cannot apply step {plan.step}")
        self.applied.append(plan.step)

    def status(self) -> RoutingState | None:
        return RoutingState("x", self.applied[-1], 0.0) if self.applied else None

    def rollback(self) -> None:
        if self.fail_rollback:
            raise RuntimeError("mesh is gone")
        self.applied.append("rollback")

    def close(self) -> None:
        return None


@dataclass
class FakeSource:
    """Produces ``rate`` samples per second of fake time; the candidate share follows the mesh."""

    clock: FakeClock
    mesh: FakeMesh
    rate: float = 100.0
    weights: dict[str, int] = field(default_factory=dict)
    stopped: bool = False
    interrupt_at: float | None = None
    rolled_back: bool = False
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def poll(self, timeout: float) -> list[Sample]:
        if self.interrupt_at is not None and self.clock.now >= self.interrupt_at:
            self.interrupt_at = None  # one Ctrl-C
            raise KeyboardInterrupt
        start = self.clock.now
        self.clock.sleep(timeout)
        step = self.mesh.applied[-1] if self.mesh.applied else "rollback"
        weight = self.weights.get(step, 100 if step == "promoted" else 0)
        out = []
        n = int(self.rate * timeout)
        for i in range(n):
            k = next(self._ids)
            arm = "candidate" if (k % 100) < weight else "baseline"
            out.append(Sample(start + i / self.rate, arm, f"r{k}", 5.0, 200, "1"))
        return out

    @property
    def finished(self) -> bool:
        return self.stopped

    def stop(self) -> None:
        self.stopped = True

    def after_rollback(self) -> None:
        self.rolled_back = True


@dataclass
class ScriptedAnalyzer:
    """Returns ``script(n_seen)`` as the verdict; records what it was fed."""

    script: Callable[[int], VerdictName]
    seen: list[Sample] = field(default_factory=list)

    def update(self, samples: Sequence[Sample]) -> None:
        self.seen.extend(samples)

    def snapshot(self) -> Snapshot:
        verdict = self.script(len(self.seen))
        metric: dict[str, Any] = {
            "name": "errors",
            "type": "error-rate",
            "verdict": "pass",
            "estimate": 0.0,
            "interval": [-0.01, 0.01],
            "tolerance": 0.02,
            "n_baseline": 0,
            "n_candidate": 0,
        }
        return Snapshot(verdict, [metric], 0, 0, reasons=[f"scripted {verdict}"])
