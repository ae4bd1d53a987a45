"""The quiet progress lines (``--quiet``): one plain line per state change, naming real steps only."""

from __future__ import annotations

import io

from meshlab.experiment.progress import QuietProgress


def test_quiet_lines_name_real_steps_and_not_the_rollback_bookkeeping() -> None:
    out = io.StringIO()
    progress = QuietProgress(out)
    progress.event({"event": "step-started", "step": "2"})
    progress.event({"event": "failed", "step": "rollback"})  # a start refused before step 1
    progress.event({"event": "starting"})
    assert out.getvalue().splitlines() == [
        "meshlab: step-started (step 2)",
        "meshlab: failed",
        "meshlab: starting",
    ]
