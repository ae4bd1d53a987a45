"""Run a load and write its samples file: the edge where the sample stream meets the disk.

:func:`plan_from_spec` turns the spec's ``load`` section (plus command-line overrides) into a
:class:`~meshlab.load.runner.LoadPlan`; :func:`record_load` runs it, writes rows in order of start
time as they are released, and on Ctrl-C stops Locust gracefully and still writes what it recorded.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from meshlab.errors import ConfigError
from meshlab.load.config import LocustConfig
from meshlab.load.inputs import encoded_bodies
from meshlab.load.ordering import SampleBatch
from meshlab.load.plan import LoadPlan, LoadResult
from meshlab.load.runner import LoadRun
from meshlab.load.spool import parse_spool_line
from meshlab.samples import COLUMNS, Sample, SampleWriter
from meshlab.spec.load import Load


def plan_from_spec(
    load: Load,
    url: str,
    *,
    base_dir: Path | None = None,
    rps: float | None = None,
    duration: float | None = None,
    workers: int | None = None,
    users: int | None = None,
) -> LoadPlan:
    """The plan for a spec's ``load`` section; the keyword arguments override the spec."""
    config = LocustConfig.from_spec(load, base_dir=base_dir)
    if rps is not None:
        config = replace(config, rps=rps, steps=[], ramp=None)
    if users is not None:
        config = replace(config, users=users)
    total = (
        duration
        if duration is not None
        else (load.total_duration if rps is None else load.duration)
    )
    encoded_bodies(config)  # payloads that do not exist or parse stop here, exit 2
    return LoadPlan(
        config=config.validated(),
        url=url.rstrip("/"),
        duration=total,
        workers=load.workers if workers is None else workers,
    )


def write_unattributed(samples: tuple[Sample, ...], path: Path) -> None:
    """Rows whose response named no arm (transport failures before the mesh answered)."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(s.row() for s in samples)


def samples_from_spool(spool: str | Path, out: str | Path) -> tuple[int, int]:
    """Turn a Locust spool (e.g. a Kubernetes master's ``MESHLAB_SAMPLES`` file) into a samples
    file in start-time order; rows without an arm go to ``<out>.unattributed.csv``.

    Returns (rows written, rows unattributed).
    """
    source, out_file = Path(spool), Path(out)
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the spool ({exc.strerror})") from exc
    rows: list[Sample] = []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        try:
            parsed = parse_spool_line(line)
        except ValueError as exc:
            raise ConfigError(f"{source}:{number}: not a spool line ({exc})") from exc
        if isinstance(parsed, Sample):
            rows.append(parsed)
    rows.sort(key=lambda s: s.timestamp)
    attributed = [s for s in rows if s.arm]
    unattributed = tuple(s for s in rows if not s.arm)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with out_file.open("w", encoding="utf-8", newline="") as fh:
        SampleWriter(fh).write(attributed)
    if unattributed:
        write_unattributed(unattributed, out_file.with_name(f"{out_file.stem}.unattributed.csv"))
    return len(attributed), len(unattributed)


def record_load(
    plan: LoadPlan,
    out: str | Path,
    *,
    run_dir: str | Path | None = None,
    on_batch: Callable[[SampleBatch], None] | None = None,
    on_start: Callable[[LoadRun], None] | None = None,
) -> LoadResult:
    """Run ``plan`` and write the samples file ``out``; returns how the run went.

    ``on_start`` receives the running :class:`LoadRun` (e.g. to wire a signal handler to its
    ``stop``); ``on_batch`` sees every ordered batch after it is written.
    """
    out_file = Path(out)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    work = Path(run_dir) if run_dir is not None else out_file.parent / f".{out_file.stem}-locust"
    with LoadRun(plan, work) as run, out_file.open("w", encoding="utf-8", newline="") as fh:
        writer = SampleWriter(fh)
        if on_start is not None:
            on_start(run)
        while True:
            try:
                for batch in run.batches():
                    writer.write(batch.samples)
                    if on_batch is not None:
                        on_batch(batch)
                break
            except KeyboardInterrupt:
                run.stop()  # then keep draining: Locust flushes its last rows and exits
        result = run.result()
    if result.unattributed or result.late:
        write_unattributed(
            result.unattributed + result.late,
            out_file.with_name(f"{out_file.stem}.unattributed.csv"),
        )
    return result
