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
