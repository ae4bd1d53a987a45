"""Request bodies from a dataset file, and predictions out of response bodies (no network).

A dataset is JSONL (one JSON value per line) or CSV (a header row, then one row per request; numbers
are parsed as numbers). Each row becomes one request body, encoded once before the run:

* ``v2`` (Open Inference Protocol): a row that is an object with ``inputs`` is sent as is; any other
  row is a feature vector sent as one FP64 (or INT64) tensor of shape ``[1, n]``.
* ``v1`` (KServe): a row that is an object with ``instances`` is sent as is; otherwise
  ``{"instances": [row]}``.
* ``json``: the row itself, or a JSON template in which the strings ``"{{row}}"``,
  ``"{{row.KEY}}"`` and ``"{{features}}"`` are replaced by the row, one of its fields, or its values
  as a list. Rendering is strict: a missing key is an error.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from meshlab.errors import ConfigError
from meshlab.spec.load import parse_extractor

Extractor = Callable[[bytes], str]


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def read_rows(path: str | Path) -> list[Any]:
    """The rows of a JSONL or CSV dataset (by file suffix); errors name the file and line."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read the payload file ({exc.strerror})") from exc
    rows: list[Any] = []
    if file.suffix.lower() == ".csv":
        reader = csv.reader(text.splitlines())
        header = next(reader, None)
        if not header:
            raise ConfigError(f"{file}:1: a CSV payload file needs a header row of feature names")
        for line, values in enumerate(reader, start=2):
            if not values:
                continue
            if len(values) != len(header):
                raise ConfigError(
                    f"{file}:{line}: expected {len(header)} values like the header, "
                    f"found {len(values)}"
                )
            rows.append({k: _number(v) for k, v in zip(header, values, strict=True)})
    elif file.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for line, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                rows.append(json.loads(raw))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{file}:{line}: not a JSON value ({exc.msg})") from exc
    else:
        raise ConfigError(f"{file}: payload files must end in .jsonl or .csv")
    if not rows:
        raise ConfigError(f"{file}: the payload file has no rows")
    return rows


def _features(row: Any, where: str) -> list[Any]:
    values = list(row.values()) if isinstance(row, dict) else row
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: expected a non-empty list of features, got {str(row)[:60]}")
    return values


def _v2_tensor(row: Any, model: str, input_name: str, where: str) -> Any:
    if isinstance(row, dict) and "inputs" in row:
        return row
    values = _features(row, where)
    flat = values[0] if len(values) == 1 and isinstance(values[0], list) else values
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in flat):
        raise ConfigError(f"{where}: V2 feature vectors must be numbers, got {str(row)[:60]}")
    datatype = "INT64" if all(isinstance(v, int) for v in flat) else "FP64"
    return {
        "id": model,
        "inputs": [
            {"name": input_name, "shape": [1, len(flat)], "datatype": datatype, "data": flat}
        ],
    }


def _render(template: Any, row: Any, where: str) -> Any:
    if isinstance(template, dict):
        return {k: _render(v, row, where) for k, v in template.items()}
    if isinstance(template, list):
        return [_render(v, row, where) for v in template]
    if template == "{{row}}":
        return row
    if template == "{{features}}":
        return _features(row, where)
    if isinstance(template, str) and template.startswith("{{row.") and template.endswith("}}"):
        key = template[len("{{row.") : -2]
        if not isinstance(row, dict) or key not in row:
            raise ConfigError(
                f"{where}: the template asks for '{key}', which the row does not have"
            )
        return row[key]
    return template


def build_bodies(
    rows: Sequence[Any],
    protocol: str,
    *,
    model: str = "model",
    input_name: str = "input-0",
    template: Any = None,
    source: str = "payloads",
) -> list[bytes]:
    """Encode one request body per row for ``protocol`` (``v2``, ``v1`` or ``json``)."""
    bodies: list[bytes] = []
    for i, row in enumerate(rows):
        where = f"{source} row {i + 1}"
        if template is not None:
            body = _render(template, row, where)
        elif protocol == "v2":
            body = _v2_tensor(row, model, input_name, where)
        elif protocol == "v1":
            body = (
                row
                if isinstance(row, dict) and "instances" in row
                else {"instances": [_features(row, where)]}
            )
        elif protocol == "json":
            body = row
        else:
            raise ConfigError(f"load.protocol: unknown protocol {protocol!r}; use v2, v1 or json")
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies


CACHE_SIZE = 4096


def make_extractor(path: str, cache_size: int = CACHE_SIZE) -> Extractor:
    """A function from a response body to the JSON text of the value at ``path`` ("" if absent).

    Results are cached by body: a model answering a cycled dataset sends the same few bodies over
    and over, and parsing each again was most of what recording a request cost. The cache is
    emptied when it reaches ``cache_size`` bodies, so unique bodies cost one dict insert more.
    """
    try:
        steps = parse_extractor(path)
    except ValueError as exc:
        raise ConfigError(f"load.extractor: {exc}") from exc
    cache: dict[bytes, str] = {}

    def cached(body: bytes) -> str:
        hit = cache.get(body)
        if hit is None:
            if len(cache) >= cache_size:
                cache.clear()
            hit = cache[body] = extract(body)
        return hit

    def extract(body: bytes) -> str:
        if not body:
            return ""
        try:
            value: Any = json.loads(body)
        except ValueError:
            return ""
        for step in steps:
            if isinstance(step, int):
                if not isinstance(value, list) or step >= len(value):
                    return ""
            elif not isinstance(value, dict) or step not in value:
                return ""
            value = value[step]
        kind = type(value)  # numbers, the usual prediction, skip the JSON encoder
        if kind is float and math.isfinite(value):
            return repr(value)
        if kind is int:
            return str(value)
        return json.dumps(value, separators=(",", ":"))

    return cached if cache_size > 0 else extract
