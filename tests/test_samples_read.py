"""The column-wise reader of samples files gives exactly what the row validator gives.

:func:`meshlab.samples.read_samples` tokenises with numpy and checks each rule per column; these
tests hold it to the row-by-row reference (``Samples.from_rows(list(iter_samples(...)))``): the
same columns (values, dtypes, parsed predictions) for valid files, and for broken files the same
error, word for word, naming the same line.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from meshlab.errors import SamplesError
from meshlab.samples import (
    Sample,
    Samples,
    _read_columns,
    iter_samples,
    read_samples,
    samples_to_csv,
)

PREDICTIONS = [
    '"legit"',
    '"fraud, likely"',  # a comma inside the quoted field
    '"say \\"hi\\""',  # JSON-escaped quotes, doubled again by the CSV
    "0.25",
    "3",
    "-0",
    "1e-7",
    "12345678901234567890",
    "[1, 2]",
    '{"label": "a", "p": [0.1, 0.9]}',
    "true",
    "null",
    "NaN",
    '"\\u00e9t\\u00e9"',
    "[1,\n 2]",  # a newline inside a quoted field
    "",
    " 7 ",
]


def _rows(n: int, seed: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    rows = []
    t = 1_700_000_000.0
    for i in range(n):
        t += float(rng.choice([0.0, 0.001, 0.25]))
        arm = str(rng.choice(["baseline", "candidate", "control"]))
        rows.append(
            Sample(
                t,
                arm,
                f"req-{i}-é" if i % 7 == 0 else f"r{i}",
                float(rng.choice([0.0, 12.5, 1e-3, 40000.123])),
                int(rng.choice([200, 404, 503, 0, 302])),
                PREDICTIONS[i % len(PREDICTIONS)],
                mirrored=arm != "baseline" and i % 2 == 0,
            )
        )
    return rows


def _reference(text: str) -> Samples | str:
    try:
        return Samples.from_rows(list(iter_samples(io.StringIO(text, newline=""), "f.csv")))
    except SamplesError as exc:
        return str(exc)


def _read(tmp_path: Path, text: str) -> Samples | str:
    path = tmp_path / "f.csv"
    path.write_text(text, encoding="utf-8", newline="")
    try:
        return read_samples(path)
    except SamplesError as exc:
        return str(exc).replace(str(path), "f.csv")


def _same(a: Samples | str, b: Samples | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    for name in Samples.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if x.dtype != y.dtype or x.shape != y.shape:
            return False
        if name == "prediction":
            if json.dumps(x.tolist()) != json.dumps(y.tolist()):  # NaN compares by its text
                return False
        elif not np.array_equal(x, y):
            return False
    return True


@pytest.mark.parametrize("seed", range(4))
def test_valid_files_read_column_wise_equal_the_row_validator(tmp_path: Path, seed: int) -> None:
    text = samples_to_csv(_rows(200, seed))
    assert _read_columns(text) is not None  # the fast path is the one under test
    assert _same(_read(tmp_path, text), _reference(text))


def test_rows_sharing_a_list_prediction_do_not_share_the_object() -> None:
    rows = [Sample(1.0 + i, "baseline", f"r{i}", 1.0, 200, "[1, 2]") for i in range(3)]
    parsed = _read_columns(samples_to_csv(rows))
    assert parsed is not None
    values = parsed.prediction.tolist()
    assert values == [[1, 2]] * 3 and len({id(v) for v in values}) == 3


def test_numeric_predictions_keep_int_and_float_as_json_loads_does() -> None:
    rows = [
        Sample(1.0 + i, "baseline", f"r{i}", 1.0, 200, text)
        for i, text in enumerate(["1", "1.0", "-2e3", "0", "7"])
    ]
    parsed = _read_columns(samples_to_csv(rows))
    assert parsed is not None
    assert [(type(v), v) for v in parsed.prediction.tolist()] == [
        (int, 1),
        (float, 1.0),
        (float, -2000.0),
        (int, 0),
        (int, 7),
    ]


MUTATIONS = [",", '"', "\n", "\r", " ", "\x00", "0", "9", "-", ".", "e", "_", "x", "\t", "", "٣"]


def test_broken_files_fail_with_the_row_validators_error(tmp_path: Path) -> None:
    """Random one-character edits, dropped and repeated lines: same columns or same error."""
    base = samples_to_csv(_rows(40, 9))
    rng = np.random.default_rng(10)
    texts = [
        base.replace("\n", "\n\n", 1),  # a blank line
        base + "\n",  # a blank line at the end
        base.replace("\n", "\r\n"),
        base.split("\n", 1)[0] + "\n",  # the header alone
        "",
        '"timestamp",arm,request_id,latency_ms,status,prediction,mirrored\n'
        + base.split("\n", 1)[1],
    ]
    lines = base.splitlines(keepends=True)
    for _ in range(60):  # repeated or reordered lines: duplicate ids, time going back
        i, j = sorted(rng.integers(1, len(lines), 2))
        texts.append("".join([*lines[: j + 1], lines[i], *lines[j + 1 :]]))
        texts.append("".join([*lines[:i], lines[j], *lines[i + 1 : j], lines[i], *lines[j + 1 :]]))
    for _ in range(400):
        at = int(rng.integers(0, len(base)))
        texts.append(base[:at] + str(rng.choice(MUTATIONS)) + base[at + 1 :])
    errors = column_wise = 0
    for text in texts:
        fast, slow = _read(tmp_path, text), _reference(text)
        assert _same(fast, slow), (text, fast if isinstance(fast, str) else "read", slow)
        errors += isinstance(slow, str)
        column_wise += _read_columns(text) is not None
    # most edits break the file (the error path), and the valid edits are read column-wise
    assert errors > 200 and column_wise > 50, (errors, column_wise)


def test_a_file_that_is_not_utf8_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(samples_to_csv(_rows(3, 1)).encode() + b"\xff\xfe")
    with pytest.raises(SamplesError, match="is not UTF-8"):
        read_samples(path)
