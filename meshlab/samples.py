"""The samples file: one CSV row per request, the contract between load, statistics and reports.

Columns, in this order (documented in the README):

============  =====================================================================================
timestamp     float, seconds since the epoch at which the request started
arm           ``baseline`` | ``candidate`` | ``control``: the arm that served it (from
              ``x-meshlab-arm``); ``control`` only in runs with a control arm (``spec.control``)
request_id    unique per client request; sent as ``x-request-id``
latency_ms    float, time to the full response
status        int HTTP status; 0 = transport failure or timeout
prediction    a JSON value extracted from the response body, empty if none
mirrored      0 | 1; 1 for a shadow copy recorded on the candidate side, paired by request_id
============  =====================================================================================

Rows are in order of start time. Files written before the control arm existed (only ``baseline``
and ``candidate``) read unchanged; :data:`ARMS` stays the two compared arms of a run without a
control, :data:`ALL_ARMS` adds ``control`` (index :data:`CONTROL`). In shadow runs with a control
both the candidate and the control record a mirrored copy of the same ``request_id``. An *error* is a response whose status is neither 2xx nor 3xx nor
listed as expected (``spec.analysis.expectedStatuses``, e.g. ``[400]`` for payloads meant to be
rejected); status 0 (a transport failure or timeout) is always an error: :func:`is_error_status`.
:class:`Samples` holds a whole file column-wise (numpy), :class:`SampleWriter` appends rows as they
arrive, and :func:`read_samples` validates a file and names the first bad line.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from meshlab.errors import SamplesError

COLUMNS = ("timestamp", "arm", "request_id", "latency_ms", "status", "prediction", "mirrored")
ARMS = ("baseline", "candidate")
ALL_ARMS = ("baseline", "candidate", "control")
BASELINE, CANDIDATE, CONTROL = 0, 1, 2


def is_error_status(status: int, expected: Collection[int] = ()) -> bool:
    """The one rule: an error unless 2xx/3xx or expected; status 0 is always an error."""
    if status == 0:
        return True
    return not (200 <= status < 400 or status in expected)


def error_mask(
    status: npt.NDArray[np.int32], expected: Collection[int] = ()
) -> npt.NDArray[np.bool_]:
    """:func:`is_error_status` over a column of statuses."""
    ok = (status >= 200) & (status < 400)
    if expected:
        ok |= np.isin(status, np.array(sorted(expected), dtype=np.int32))
    errors: npt.NDArray[np.bool_] = ~ok | (status == 0)
    return errors


@dataclass(frozen=True)
class Sample:
    """One request as recorded by the load generator (or a mirrored copy seen by the candidate)."""

    timestamp: float
    arm: str
    request_id: str
    latency_ms: float
    status: int
    prediction: str = ""  # JSON text; "" when the response carried no prediction
    mirrored: bool = False

    @property
    def is_error(self) -> bool:
        """An error with no expected statuses (see :func:`is_error_status`)."""
        return is_error_status(self.status)

    def row(self) -> list[str]:
        return [
            repr(self.timestamp),
            self.arm,
            self.request_id,
            f"{self.latency_ms:.3f}",
            str(self.status),
            self.prediction,
            "1" if self.mirrored else "0",
        ]


@dataclass(frozen=True)
class Samples:
    """A samples file column-wise. ``arm`` is 0 (baseline), 1 (candidate) or 2 (control)."""

    timestamp: npt.NDArray[np.float64]
    arm: npt.NDArray[np.int8]
    request_id: npt.NDArray[np.str_]
    latency_ms: npt.NDArray[np.float64]
    status: npt.NDArray[np.int32]
    prediction: npt.NDArray[np.object_]  # parsed JSON values; None where the row had none
    mirrored: npt.NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.timestamp.shape[0])

    @property
    def is_error(self) -> npt.NDArray[np.bool_]:
        """Errors with no expected statuses (see :func:`is_error_status`)."""
        return error_mask(self.status)

    def errors(self, expected: Collection[int] = ()) -> npt.NDArray[np.bool_]:
        """Errors given the analysis' expected statuses (see :func:`is_error_status`)."""
        return error_mask(self.status, expected)

    def take(self, index: npt.NDArray[Any] | slice) -> Samples:
        """The rows selected by a boolean mask, index array or slice, as a new ``Samples``."""
        return Samples(
            self.timestamp[index],
            self.arm[index],
            self.request_id[index],
            self.latency_ms[index],
            self.status[index],
            self.prediction[index],
            self.mirrored[index],
        )

    @classmethod
    def from_rows(cls, rows: Sequence[Sample]) -> Samples:
        """Column-wise view of recorded rows (predictions parsed from their JSON text)."""
        return cls(
            np.array([r.timestamp for r in rows], dtype=np.float64),
            np.array([ALL_ARMS.index(r.arm) for r in rows], dtype=np.int8),
            np.array([r.request_id for r in rows], dtype=np.str_),
            np.array([r.latency_ms for r in rows], dtype=np.float64),
            np.array([r.status for r in rows], dtype=np.int32),
            np.array(
                [json.loads(r.prediction) if r.prediction else None for r in rows] + [0],
                dtype=object,
            )[:-1],
            np.array([r.mirrored for r in rows], dtype=np.bool_),
        )


def _parse_row(row: list[str], line: int, where: str) -> Sample:
    if len(row) != len(COLUMNS):
        raise SamplesError(f"{where}:{line}: expected {len(COLUMNS)} columns, found {len(row)}")
    ts, arm, rid, lat, status, pred, mirrored = row

    def bad(col: str, why: str) -> SamplesError:
        return SamplesError(f"{where}:{line}: column {col}: {why}")

    try:
        timestamp = float(ts)
    except ValueError:
        raise bad("timestamp", f"{ts!r} is not a number of seconds since the epoch") from None
    if not math.isfinite(timestamp) or timestamp < 0:
        raise bad("timestamp", f"{ts!r} is not a time since the epoch")
    if arm not in ALL_ARMS:
        raise bad("arm", f"{arm!r} is not 'baseline', 'candidate' or 'control'")
    if not rid:
        raise bad("request_id", "empty; every request needs a unique id")
    try:
        latency = float(lat)
    except ValueError:
        raise bad("latency_ms", f"{lat!r} is not a number") from None
    if not math.isfinite(latency) or latency < 0:
        raise bad("latency_ms", f"{lat!r} must be a finite number >= 0")
    try:
        code = int(status)
    except ValueError:
        raise bad(
            "status", f"{status!r} is not an integer HTTP status (0 = transport failure)"
        ) from None
    if code != 0 and not 100 <= code <= 599:
        raise bad("status", f"{code} is not an HTTP status or 0")
    if pred:
        try:
            json.loads(pred)
        except ValueError:
            raise bad("prediction", f"{pred[:40]!r} is not JSON") from None
    if mirrored not in ("0", "1"):
        raise bad("mirrored", f"{mirrored!r} is not 0 or 1")
    return Sample(timestamp, arm, rid, latency, code, pred, mirrored == "1")


def iter_samples(stream: IO[str], where: str = "<samples>") -> Iterator[Sample]:
    """Parse and validate rows from a text stream with a header row."""
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        raise SamplesError(f"{where}:1: empty file; expected the header {','.join(COLUMNS)}")
    if tuple(header) != COLUMNS:
        raise SamplesError(
            f"{where}:1: header must be {','.join(COLUMNS)} (got {','.join(header)})"
        )
    seen: set[tuple[str, bool, bool]] = set()
    last = -math.inf
    for line, row in enumerate(reader, start=2):
        sample = _parse_row(row, line, where)
        # a shadow with a control mirrors one request to the candidate and to the control
        key = (sample.request_id, sample.mirrored, sample.arm == "control")
        if key in seen:
            raise SamplesError(
                f"{where}:{line}: column request_id: {sample.request_id!r} appears twice"
                f"{' as a mirrored copy' if sample.mirrored else ''}"
            )
        seen.add(key)
        if sample.timestamp < last:
            raise SamplesError(
                f"{where}:{line}: column timestamp: rows must be in order of start time"
            )
        last = sample.timestamp
        yield sample


def read_samples(path: str | Path) -> Samples:
    """Read and validate a whole samples file."""
    file = Path(path)
    try:
        with file.open(newline="", encoding="utf-8") as fh:
            return Samples.from_rows(list(iter_samples(fh, str(file))))
    except OSError as exc:
        raise SamplesError(f"{file}: cannot read the samples file ({exc.strerror})") from exc


class SampleWriter:
    """Append samples to a CSV file (header first), flushing so readers can follow it live."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._writer = csv.writer(stream, lineterminator="\n")
        self._writer.writerow(COLUMNS)

    def write(self, samples: Iterable[Sample]) -> None:
        for sample in samples:
            self._writer.writerow(sample.row())
        self._stream.flush()


def samples_to_csv(samples: Iterable[Sample]) -> str:
    """The CSV text of a sequence of samples (header included)."""
    buffer = io.StringIO()
    SampleWriter(buffer).write(samples)
    return buffer.getvalue()
