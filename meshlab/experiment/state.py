"""The state file: where a running, finished or interrupted experiment stands, readable by any process.

Written atomically on every state change to ``$MESHLAB_HOME/experiments/<namespace>.<name>.json``
(default ``~/.local/state/meshlab``), so ``meshlab status`` tells the truth after a crash and
``meshlab rollback`` knows how to reach the mesh (for the local mesh: its route file and processes).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from meshlab.errors import ConfigError
from meshlab.report.record import write_atomic
from meshlab.spec import Experiment

Phase = Literal[
    "starting", "running", "promoted", "aborted", "inconclusive", "rolled-back", "failed"
]
FINAL_PHASES = ("promoted", "aborted", "inconclusive", "rolled-back", "failed")


def meshlab_home() -> Path:
    """Root of meshlab's local state (``$MESHLAB_HOME`` or ``~/.local/state/meshlab``)."""
    configured = os.environ.get("MESHLAB_HOME")
    return Path(configured) if configured else Path.home() / ".local" / "state" / "meshlab"


def state_path(experiment: Experiment) -> Path:
    """Where the state of this experiment lives."""
    meta = experiment.metadata
    return meshlab_home() / "experiments" / f"{meta.namespace}.{meta.name}.json"


@dataclass(frozen=True)
class ExperimentState:
    """One snapshot of an experiment's progress."""

    experiment: str
    namespace: str
    strategy: str
    target: str
    phase: Phase
    step: str  # the routing step in force: "1", "2", ..., "promoted", "rollback"
    run_dir: str
    pid: int
    started_at: float
    updated_at: float
    detail: str = ""
    mesh: dict[str, Any] = field(default_factory=dict)  # backend data needed to roll back later

    def advance(self, **changes: Any) -> ExperimentState:
        """A copy with ``changes`` applied and ``updated_at`` set to now."""
        return replace(self, updated_at=time.time(), **changes)

    @property
    def process_alive(self) -> bool:
        """Whether the meshlab process that wrote this state still runs."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def describe(self) -> str:
        """One human line: phase, step and whether it is still running."""
        if self.phase in FINAL_PHASES:
            where = f"finished: {self.phase}"
        elif self.process_alive:
            where = f"running (pid {self.pid})"
        else:
            where = f"INTERRUPTED while {self.phase} (pid {self.pid} is gone)"
        age = time.time() - self.updated_at
        detail = f"; {self.detail}" if self.detail else ""
        return (
            f"{self.namespace}/{self.experiment} [{self.strategy} on {self.target}]: {where}; "
            f"routing step {self.step}; updated {age:.0f} s ago; run dir {self.run_dir}{detail}"
        )


def save_state(path: Path, state: ExperimentState) -> None:
    """Atomically replace the state file."""
    write_atomic(path, json.dumps(asdict(state), indent=2, sort_keys=True) + "\n")


def load_state(path: Path) -> ExperimentState | None:
    """The saved state, or None when the experiment never ran on this machine."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ExperimentState(**data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{path}: unreadable state file ({exc}); delete it if the experiment is over"
        ) from exc
