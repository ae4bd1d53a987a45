"""The run directory: every file an experiment leaves behind, and reading it back for reports.

Layout of ``runs/<experiment>-<UTC timestamp>/``::

    experiment.yaml       the spec as given
    manifests/NN-*.yaml   the manifests applied, in order (rollback included when it happened)
    samples.csv           every request (the samples contract, see meshlab.samples)
    events.jsonl          state changes: {"time", "event", "step", "detail"...}, one JSON per line
    history.jsonl         the analysis at every look: {"time", "n", "verdict", "metrics": [...]}
    preflight.json        what each version answered before step 1 (meshlab.experiment.preflight)
    result.json           the final verdict, its numbers and evidence (meshlab.report.result)
    report.md, report.html

The report is rebuilt from these files alone (``meshlab report DIR``), so a run copied off a CI
machine can still be explained.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshlab.errors import ConfigError
from meshlab.report.result import RunResult
from meshlab.samples import Samples, read_samples

SPEC = "experiment.yaml"
SAMPLES = "samples.csv"
EVENTS = "events.jsonl"
HISTORY = "history.jsonl"
RESULT = "result.json"
MANIFESTS = "manifests"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"


def write_atomic(path: Path, text: str) -> None:
    """Write through a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON record as a line and flush it to disk (events survive a crash)."""
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of a file (a torn last line from a crash is skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


@dataclass(frozen=True)
class RunRecord:
    """Everything a report needs, read back from a run directory."""

    path: Path
    spec_text: str
    result: RunResult
    events: list[dict[str, Any]]
    history: list[dict[str, Any]]
    samples: Samples
    manifests: list[tuple[str, str]]  # (file name, YAML text) in the order applied

    @property
    def name(self) -> str:
        return self.result.experiment or self.path.name


def load_run(path: str | Path) -> RunRecord:
    """Read a run directory; a missing result or samples file is a clear error."""
    root = Path(path)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a run directory (expected runs/<experiment>-<time>/)")
    result_path = root / RESULT
    if not result_path.exists():
        raise ConfigError(f"{root}: no {RESULT}; the run has not finished (see 'meshlab status')")
    try:
        result = RunResult.from_json(json.loads(result_path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ConfigError(f"{result_path}: not valid JSON ({exc})") from exc
    manifests_dir = root / MANIFESTS
    manifests = (
        [(p.name, p.read_text(encoding="utf-8")) for p in sorted(manifests_dir.glob("*.yaml"))]
        if manifests_dir.is_dir()
        else []
    )
    spec_path = root / SPEC
    return RunRecord(
        path=root,
        spec_text=spec_path.read_text(encoding="utf-8") if spec_path.exists() else "",
        result=result,
        events=read_jsonl(root / EVENTS),
        history=read_jsonl(root / HISTORY),
        samples=read_samples(root / SAMPLES),
        manifests=manifests,
    )


def dump_json(data: Any) -> str:
    """Stable, readable JSON for result files."""
    return json.dumps(data, indent=2, sort_keys=True, default=_default) + "\n"


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Iterable):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
