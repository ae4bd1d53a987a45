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
arrive, and :func:`read_samples` validates a file and names the first bad line. It reads column by
column (numpy's C tokenizer, then one vectorised check per rule: ~1 s per million rows, where the
row-by-row validator :func:`iter_samples` takes ~30 us a row); a file that breaks any rule is read
again by :func:`iter_samples`, so the error and its line are exactly the row validator's.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
import warnings
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
    line = 1
    rows = iter(reader)
    while True:
        line += 1
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:  # a NUL byte, or a field beyond the csv module's size limit
            raise SamplesError(f"{where}:{line}: not a CSV row ({exc})") from None
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
    """Read and validate a whole samples file (see the module docstring for how, and how fast)."""
    file = Path(path)
    try:
        with file.open(newline="", encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise SamplesError(f"{file}: cannot read the samples file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise SamplesError(
            f"{file}: byte {exc.start} is not UTF-8 ({exc.reason}); write the file as UTF-8"
        ) from None
    fast = _read_columns(text)
    if fast is not None:
        return fast
    return Samples.from_rows(list(iter_samples(io.StringIO(text, newline=""), str(file))))


_NUMBERS = re.compile(r"[0-9eE+\-.]+")  # texts made of these hold no separator of a JSON array
_IMMUTABLE = (str, int, float, bool, type(None))


def _read_columns(text: str) -> Samples | None:
    """The file column-wise if every row keeps every rule of :func:`iter_samples`, else None.

    Each value is converted by the function the row validator uses (``float``, ``int``,
    ``json.loads``), so the columns are identical to ``Samples.from_rows(list(iter_samples(...)))``
    (numpy's tokenizer splits fields as the csv module does: quotes, doubled quotes, delimiters
    and newlines inside quotes).
    Inputs whose tokenisation could differ from the csv module's go to the row validator: a
    ``\r`` (line endings inside quotes), a NUL, a blank line (numpy skips it, csv yields an
    empty row), a header that is not the plain column list.
    """
    head, _, body = text.partition("\n")
    if head != ",".join(COLUMNS) or not body or "\r" in text or "\x00" in text or "\n\n" in text:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter(
                "error"
            )  # any doubt (a short row, an odd number) goes to the rows
            cells = np.loadtxt(
                io.StringIO(body),
                delimiter=",",
                quotechar='"',
                dtype=object,
                comments=None,
                ndmin=2,
                encoding=None,
            )
    except (ValueError, Warning):
        return None
    if cells.shape[1] != len(COLUMNS):
        return None
    ts, arm, rid, lat, status, pred, mirrored = (cells[:, i] for i in range(len(COLUMNS)))
    try:  # numpy casts str objects with float() and int(): the row validator's converters
        timestamp = ts.astype(np.float64)
        latency = lat.astype(np.float64)
        code = status.astype(np.int64)
    except (ValueError, OverflowError, TypeError):
        return None
    arms = np.full(len(arm), -1, dtype=np.int8)
    for index, name in enumerate(ALL_ARMS):
        arms[arm == name] = index
    one, zero = mirrored == "1", mirrored == "0"
    if (
        not (np.isfinite(timestamp).all() and (timestamp >= 0).all())
        or (arms < 0).any()
        or (rid == "").any()
        or not (np.isfinite(latency).all() and (latency >= 0).all())
        or not ((code == 0) | ((code >= 100) & (code <= 599))).all()
        or not (one | zero).all()
        or (np.diff(timestamp) < 0).any()
    ):
        return None
    control = arms == CONTROL
    for mirror in (one, zero):  # a request id once per (mirrored, control) as iter_samples keys it
        for group in (mirror & control, mirror & ~control):
            ids = rid[group].tolist()
            if len(set(ids)) != len(ids):
                return None
    predictions = _predictions(pred.tolist())
    if predictions is None:
        return None
    return Samples(
        timestamp,
        arms,
        np.array(rid.tolist(), dtype=np.str_),
        latency,
        code.astype(np.int32),
        predictions,
        one,
    )


def _predictions(texts: list[str]) -> npt.NDArray[np.object_] | None:
    """Parsed JSON of each prediction (None where empty), or None if one is not JSON.

    Each distinct text is parsed once (labels repeat), by ``json.loads``; when every distinct
    text is made of number characters only, all of them in one ``json.loads`` of the texts joined
    into an array (one text cannot spill into the next without a separator, so the array has
    one value per text, each the value ``json.loads`` gives the text alone). Lists and objects
    are parsed again per row, so no two rows share a mutable value.
    """
    table: dict[str, Any] = dict.fromkeys(texts)
    table.pop("", None)
    keys = list(table)
    try:
        parsed = None
        if keys and _NUMBERS.fullmatch("".join(keys)):
            with contextlib.suppress(ValueError):
                parsed = json.loads("[" + ",".join(keys) + "]")
        if parsed is None or len(parsed) != len(keys):
            parsed = [json.loads(key) for key in keys]
    except (ValueError, RecursionError):
        return None
    table.update(zip(keys, parsed, strict=True))
    table[""] = None
    shared = [key for key, value in zip(keys, parsed, strict=True) if type(value) not in _IMMUTABLE]
    if shared:
        fresh = set(shared)
        values = [json.loads(t) if t in fresh else table[t] for t in texts]
    else:
        values = list(map(table.__getitem__, texts))
    return np.array([*values, 0], dtype=object)[:-1]


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
