"""Reading Locust's spool while it is written: rows, unattributed rows and each node's watermark.

The Locust side (:mod:`meshlab.load.locust_user`) appends the samples columns to one spool file in
completion order, an empty ``arm`` when the response named none, and after its rows each node a
marker ``#,node,watermark``: the start of its oldest request still in flight. :class:`SpoolTail`
reads what was appended since the last call (keeping a half-written last line for the next) and
turns the markers into the load's watermark (:meth:`SpoolTail.watermark`), the promise the
ordered merge (:mod:`meshlab.load.ordering`) releases rows against. Pure file reading, no process
handling: :class:`meshlab.load.runner.LoadRun` owns the Locust processes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from meshlab.errors import LoadError
from meshlab.samples import Sample


def parse_spool_line(line: str) -> Sample | tuple[str, float]:
    """One spool line: a sample row, or a ``(node, watermark)`` marker (``#,node,watermark``).

    The spool is what the Locust side writes (see :mod:`meshlab.load.locust_user`): the samples
    columns in completion order, an empty ``arm`` when the response named none.
    """
    if line[0] == "#":  # a node's watermark, written after the rows it covers
        _, node, mark = line.split(",")
        return node, float(mark)
    # Only a prediction holding commas is quoted; plain splitting is 3x cheaper than csv.
    row = next(csv.reader([line])) if '"' in line else line.split(",")
    ts, arm, rid, latency, status, prediction, mirrored = row
    return Sample(float(ts), arm, rid, float(latency), int(status), prediction, mirrored == "1")


class SpoolTail:
    """The rows appended to ``path`` since the last :meth:`read`, and the nodes' watermarks.

    ``nodes`` is how many Locust processes write rows (the workers, or 1 for a local runner):
    until every one has written a marker the watermark falls back to ``now - lag``.
    """

    def __init__(self, path: Path, nodes: int) -> None:
        self.path = path
        self.nodes = max(1, nodes)
        self._offset = 0
        self._partial = b""
        self._node_marks: dict[str, float] = {}
        self.rows_seen = 0  # every row read, with or without an arm
        self.first_start: float | None = None  # the earliest start time read so far
        self.unattributed: list[Sample] = []  # rows whose response named no arm

    def read(self) -> list[Sample]:
        """The attributed rows appended since the last call, in completion order."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError as exc:
            raise LoadError(f"{self.path}: cannot read Locust's samples ({exc.strerror})") from exc
        self._offset += len(chunk)
        data = self._partial + chunk
        complete, _, self._partial = data.rpartition(b"\n")
        if not complete:
            return []
        out: list[Sample] = []
        first = self.first_start
        for line in complete.decode("utf-8").split("\n"):
            sample = parse_spool_line(line)
            if isinstance(sample, tuple):
                self._node_marks[sample[0]] = sample[1]
                continue
            self.rows_seen += 1
            if first is None or sample.timestamp < first:
                first = sample.timestamp
            if sample.arm:
                out.append(sample)
            else:
                self.unattributed.append(sample)
        self.first_start = first
        return out

    def watermark(self, now: float, lag: float) -> float:
        """From the Locust nodes' own watermarks once all have reported; else ``now - lag``."""
        fallback = now - lag
        if len(self._node_marks) < self.nodes:
            return fallback
        return max(fallback, min(self._node_marks.values()))


def locust_request_count(stats_json: Path) -> int | None:
    """Locust's own count of requests (its ``--json-file`` report), or None if it wrote none."""
    try:
        entries = json.loads(stats_json.read_text(encoding="utf-8"))
        return sum(int(e["num_requests"]) for e in entries)
    except (OSError, ValueError, KeyError, TypeError):
        return None
