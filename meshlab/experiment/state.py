"""The state file: where a running, finished or interrupted experiment stands, readable by any process.

Written atomically on every state change to
``$MESHLAB_HOME/experiments/<namespace>.<name>.<place>.json`` (default ``~/.local/state/meshlab``),
so ``meshlab status`` tells the truth after a crash and ``meshlab rollback`` knows how to reach the
mesh (its target, and for a cluster the kubeconfig path and context; for the local mesh its route
file and processes). ``<place>`` is a short hash of the directory the spec file is in: the same
experiment started twice from one checkout shares a state file (and the second start is refused
while the first runs), while two checkouts on one machine (two demos) never block each other. In a
cluster the routes themselves carry the lease that keeps two places from running one experiment.
"""

from __future__ import annotations

import hashlib
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


def place_key(spec_file: Path) -> str:
    """A short, stable key for where an experiment is run from: its spec file's directory."""
    where = str(spec_file.resolve().parent)
    return hashlib.sha256(where.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def state_path(experiment: Experiment, spec_file: Path) -> Path:
    """Where the state of this experiment, started from ``spec_file``, lives."""
    meta = experiment.metadata
    key = place_key(spec_file)
    return meshlab_home() / "experiments" / f"{meta.namespace}.{meta.name}.{key}.json"


def cluster_record(
    experiment: Experiment, kubeconfig: str | None, context: str | None
) -> dict[str, Any]:
    """What ``rollback``/``status`` need to reach the cluster again: paths and names, no secrets.

    Flags override the spec, as they do for ``start``; a relative kubeconfig path is made absolute
    so the record holds from any directory. Empty for the local mesh.
    """
    target = experiment.spec.target
    if target.kind != "kubernetes":
        return {}
    kubeconfig, context = kubeconfig or target.kubeconfig, context or target.context
    record: dict[str, Any] = {}
    if kubeconfig:
        record["kubeconfig"] = str(Path(kubeconfig).expanduser().resolve())
    if context:
        record["context"] = context
    return record


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
