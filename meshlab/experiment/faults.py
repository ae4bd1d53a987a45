"""The fault model (issue 17): what the controller does when a component of the mesh fails mid-run.

The mesh backend reports failed components (``MeshBackend.faults()``); one rule per role decides:

=================================  =========================================================  ====
who failed                         what meshlab does                                          exit
=================================  =========================================================  ====
the candidate (server or sidecar)  abort: "candidate crashed after N requests; M failed",     1
                                   roll back
the baseline                       infrastructure failure, said plainly; routes are put back  4
                                   on the baseline anyway (nothing better is left)
router, load, metrics, control     infrastructure failure; roll back                          4
=================================  =========================================================  ====

A candidate that dies is the regression the run exists to catch, so it is an abort; but only when
every failed component is the candidate's: if anything else failed too, the environment is not
trustworthy enough to blame the candidate, and the run ends as an infrastructure failure naming
every fault. Faults are judged at every look, before the statistics.

Missing data is never progress (issue 18): :func:`missing_evidence` says what a step still lacks
before a promote verdict may raise the weight, naming the metrics source's outage when there is
one (:func:`outage_of`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from meshlab.samples import Sample


class FaultLike(Protocol):
    """What the controller reads of ``meshlab.mesh.base.Fault``."""

    @property
    def role(self) -> str: ...

    @property
    def since(self) -> float: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class FaultVerdict:
    """How the run ends because of faults: whose fault it is and the one-line reason."""

    role: str  # "candidate" (abort, exit 1) or the role of the first other fault (exit 4)
    reason: str


class OutageLike(Protocol):
    """What the controller reads of ``meshlab.metrics.base.OutageStatus``."""

    def describe(self) -> str: ...


def outage_of(source: object) -> OutageLike | None:
    """The live source's ongoing outage (``outage_status``), or None: none, or it cannot tell."""
    status = getattr(source, "outage_status", None)
    return status if status is not None and callable(getattr(status, "describe", None)) else None


def missing_evidence(
    step: str,
    counts: dict[str, int],
    requests: int,
    min_samples: int,
    concurrent: bool,
    outage: OutageLike | None,
    reference: str = "baseline",
) -> str | None:
    """What step ``step`` lacks before a promote verdict may move on; None when it has it all.

    The evidence is fresh data from this step: ``min_samples`` requests, with samples of both
    compared arms, the candidate and its ``reference`` (the baseline, or the control with
    ``spec.control``); only the candidate's in a step without a concurrent baseline, a soak.
    """
    arms = ["candidate", reference] if concurrent else ["candidate"]
    empty = [arm for arm in arms if counts.get(arm, 0) == 0]
    if not empty and requests >= min_samples:
        return None
    if outage is not None:
        lack = f"no data in step {step}" if requests == 0 else f"too little data in step {step}"
        return f"{lack}: {outage.describe()}"
    if empty:
        return f"no {' or '.join(empty)} samples in step {step}"
    return f"only {requests} requests in step {step} (minSamples: {min_samples})"


def mesh_faults(mesh: object) -> list[FaultLike]:
    """The mesh's failed components; [] for a backend that cannot tell (no ``faults()``)."""
    faults = getattr(mesh, "faults", None)
    return list(faults()) if callable(faults) else []


def judge_faults(faults: Sequence[FaultLike], rows: Sequence[Sample]) -> FaultVerdict | None:
    """Apply the fault model; None when nothing failed."""
    if not faults:
        return None
    ordered = sorted(faults, key=lambda f: f.since)
    described = "; ".join(f.describe() for f in ordered)
    if all(f.role == "candidate" for f in ordered):
        served = [s for s in rows if s.arm == "candidate"]
        failed = sum(1 for s in served if s.is_error)
        return FaultVerdict(
            "candidate",
            f"candidate crashed after {len(served)} requests; {failed} failed ({described})",
        )
    first = next(f for f in ordered if f.role != "candidate")
    if first.role == "baseline":
        return FaultVerdict(
            "baseline",
            f"the baseline failed ({described}): an infrastructure failure, not a verdict on the "
            "candidate; routes are put back on the baseline anyway",
        )
    return FaultVerdict(first.role, f"infrastructure failure: {first.role} failed ({described})")
