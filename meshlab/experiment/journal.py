"""The record of one run as it happens: events, the state file, the manifests applied, the looks.

Everything the controller writes goes through a :class:`Journal`, so the loop, the start-up and
every ending (decision, error, interrupt) leave the same files behind: ``events.jsonl`` (also sent
to the progress view and the webhooks), the state file read by ``meshlab status``,
``manifests/NN-<step>.yaml`` in the order they were applied, and ``history.jsonl`` (one line per
look).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from meshlab.experiment.notify import Notifier
from meshlab.experiment.ports import Clock, Progress, Snapshot
from meshlab.experiment.state import ExperimentState, save_state
from meshlab.manifests import Manifest, Step, render_step, step_filename, to_yaml
from meshlab.report.record import EVENTS, HISTORY, MANIFESTS, append_jsonl
from meshlab.spec import Experiment


class Journal:
    """Writes the run's record into ``run_dir`` and the state file."""

    def __init__(
        self,
        experiment: Experiment,
        *,
        run_dir: Path,
        state: ExperimentState,
        state_file: Path,
        progress: Progress,
        notifier: Notifier | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.exp = experiment
        self.run_dir = run_dir
        self.state = state
        self.state_file = state_file
        self.progress = progress
        self.notifier = notifier
        self.clock = clock
        self.applied = 0  # manifests written so far

    def event(self, event: str, **detail: Any) -> None:
        """One event: appended to events.jsonl, shown, and sent to the webhooks."""
        record = {
            "time": self.clock(),
            "event": event,
            "experiment": self.exp.metadata.name,
            "strategy": self.exp.spec.strategy,
            "phase": self.state.phase,
            "step": self.state.step,
            **detail,
        }
        append_jsonl(self.run_dir / EVENTS, record)
        self.progress.event(record)
        if self.notifier is not None:
            self.notifier.send(record)

    def set_state(self, **changes: Any) -> None:
        """Advance the state and replace the state file atomically."""
        self.state = self.state.advance(**changes)
        save_state(self.state_file, self.state)

    def manifests(self, step: Step, docs: Sequence[Manifest] | None = None) -> Path:
        """Write the manifests of ``step`` as the next ``manifests/NN-<step>.yaml``."""
        self.applied += 1
        path = self.run_dir / MANIFESTS / step_filename(self.applied, step.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = to_yaml(render_step(self.exp, step) if docs is None else docs)
        path.write_text(text, encoding="utf-8")
        return path

    def look(self, step: Step, snapshot: Snapshot, elapsed: float) -> None:
        """One line of history.jsonl: where the analysis stood at this look."""
        append_jsonl(
            self.run_dir / HISTORY,
            {
                "time": round(elapsed, 3),
                "step": step.name,
                "verdict": snapshot.verdict,
                "n_baseline": snapshot.n_baseline,
                "n_candidate": snapshot.n_candidate,
                "metrics": snapshot.metrics,
            },
        )
