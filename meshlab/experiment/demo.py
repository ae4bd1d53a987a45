"""``meshlab demo``: three experiments on the embedded local mesh with the sample models.

1. a canary of the good candidate, expected to be **promoted**;
2. a canary of the bad candidate (added latency and 5xx), expected to be **aborted** and rolled back;
3. a shadow test of the broken-preprocessing candidate, expected to be **aborted** on prediction
   divergence while users only ever see the baseline.

The specs are ``examples/demo/*.yaml`` in the source checkout; each run leaves its run directory
and reports under ``--runs``. Exit code 0 when every verdict is the expected one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from meshlab.errors import EXIT_INTERRUPTED, ConfigError
from meshlab.experiment.run import ProgressMode, start_experiment

DEMO_DIR = Path(__file__).resolve().parents[2] / "examples" / "demo"


@dataclass(frozen=True)
class DemoCase:
    spec: str
    expected: str
    story: str


CASES = (
    DemoCase("canary-good.yaml", "promote", "canary of the good candidate"),
    DemoCase("canary-bad.yaml", "abort", "canary of the bad candidate (slow, some 5xx)"),
    DemoCase("shadow-bad.yaml", "abort", "shadow of the broken-preprocessing candidate"),
)


def run_demo(
    runs: Path, progress: ProgressMode = "rich", cases: tuple[DemoCase, ...] = CASES
) -> int:
    """Run every case; print a summary with the report paths; 0 if all verdicts are as expected."""
    if not DEMO_DIR.is_dir():
        raise ConfigError(
            f"{DEMO_DIR}: the demo runs from a meshlab source checkout (examples/demo/)"
        )
    console = Console(stderr=True)
    table = Table(title="meshlab demo", title_justify="left")
    for column in ("experiment", "expected", "verdict", "decided after", "time", "report"):
        table.add_column(column)
    ok = True
    reports: list[Path] = []
    began = time.monotonic()
    for case in cases:
        console.rule(f"[bold]{case.story}[/bold]")
        started = time.monotonic()
        result = start_experiment(DEMO_DIR / case.spec, runs=runs, progress=progress)
        if result.outcome.exit_code == EXIT_INTERRUPTED:  # rolled back; the rest is not wanted
            return EXIT_INTERRUPTED
        verdict = result.outcome.verdict
        ok &= verdict == case.expected
        decided = result.result.get("decided_after") or {}
        html = result.reports[1] if result.reports else result.run_dir
        reports.append(html)
        table.add_row(
            case.story,
            case.expected,
            ("[green]" if verdict == case.expected else "[red]") + verdict,
            f"{decided.get('requests', '-')} requests",
            f"{time.monotonic() - started:.0f} s",
            html.parent.name,
        )
        console.print(f"{case.spec}: {verdict} — {result.outcome.reason}")
    console.print(table)
    for case, path in zip(cases, reports, strict=True):
        print(f"{case.story}: {path}")
    console.print(
        f"demo finished in {time.monotonic() - began:.0f} s; "
        + ("every verdict as expected" if ok else "[red]some verdicts were not as expected")
    )
    return 0 if ok else 1
