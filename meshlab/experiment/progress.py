"""Live progress of an experiment: a rich table in a terminal, or quiet / JSON-lines for CI."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from meshlab.experiment.ports import Snapshot
from meshlab.report.text import pct


class RichProgress:
    """Redraws a table at most a few times a second: step, weights, requests, intervals, time left."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._live = Live(console=self.console, refresh_per_second=4, transient=False)
        self._live.start()

    def event(self, record: dict[str, Any]) -> None:
        detail = {
            k: v
            for k, v in record.items()
            if k not in ("time", "event", "experiment", "strategy", "phase", "step")
        }
        extra = ", ".join(f"{k}={v}" for k, v in detail.items())
        self._live.console.print(
            f"[bold]{record['event']}[/bold] step {record.get('step')} {extra}"
        )

    def look(
        self,
        step_label: str,
        weight: int,
        mirror: float,
        snapshot: Snapshot,
        step_elapsed: float,
        step_limit: float,
    ) -> None:
        header = Text(
            f"{step_label}: candidate {weight}%"
            + (f", mirror {mirror:g}%" if mirror else "")
            + f" — requests baseline {snapshot.n_baseline} / candidate {snapshot.n_candidate}"
            + f" — {max(0.0, step_limit - step_elapsed):.0f} s left in step",
            style="bold",
        )
        table = Table()
        for column in ("metric", "estimate", "interval", "tolerance", "verdict"):
            table.add_column(column)
        for m in snapshot.metrics:
            lo, hi = (m.get("interval") or [None, None])[:2]
            table.add_row(
                m["name"],
                pct(m.get("estimate")),
                f"[{pct(lo)}, {pct(hi)}]",
                pct(m.get("tolerance")),
                str(m.get("verdict")),
            )
        table.caption = f"overall: {snapshot.verdict}"
        self._live.update(Group(header, table))

    def close(self) -> None:
        self._live.stop()


class QuietProgress:
    """Prints only state changes, one plain line each (for logs)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def event(self, record: dict[str, Any]) -> None:
        step = record.get("step")
        # "rollback" is where the journal stands after one, not a step of the experiment
        at = f" (step {step})" if step not in (None, "", "rollback") else ""
        print(f"meshlab: {record['event']}{at}", file=self.stream)

    def look(
        self,
        step_label: str,
        weight: int,
        mirror: float,
        snapshot: Snapshot,
        step_elapsed: float,
        step_limit: float,
    ) -> None:
        return None

    def close(self) -> None:
        return None


class JsonProgress(QuietProgress):
    """Every event as one JSON line on stderr (stdout is kept for the final result)."""

    def event(self, record: dict[str, Any]) -> None:
        print(json.dumps(record, sort_keys=True), file=self.stream, flush=True)
