"""JSON from untrusted posters: bounded nesting, finite numbers only, no RecursionError (pure).

:func:`loads` is what the collector parses every posted document with. It refuses, with a reason
code the collector counts:

* ``json_too_deep`` -- arrays/objects nested deeper than ``max_depth``. Checked *before* parsing by
  a linear scan (strings and escapes removed, brackets summed with numpy), so 200k ``[`` cost
  milliseconds and never reach the recursive C decoder;
* ``non_finite_number`` -- ``NaN``, ``Infinity``, ``-Infinity`` and literals that overflow a double
  (``1e400``), and integers beyond 64 bits (a timestamp or a prediction is neither);
* ``bad_json`` -- anything else :func:`json.loads` refuses, and bodies that are not UTF-8.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

DEFAULT_MAX_DEPTH = 64
_INT_LIMIT = 2**63
_STRUCTURAL = b'[]{}"\\'
_DELETE = bytes(b for b in range(256) if b not in _STRUCTURAL)
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')


class JsonRejected(ValueError):
    """A document the collector will not parse; ``reason`` is the counted code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def nesting_depth(data: bytes) -> int:
    """The deepest array/object nesting of ``data`` (brackets inside strings do not count)."""
    if b"\\" in data:
        data = _ESCAPE.sub(b"", data)  # escapes first (\" \\ \n ...): quotes left are delimiters
    structural = data.translate(None, _DELETE)
    if b"[" not in structural and b"{" not in structural:
        return 0
    brackets = _STRING.sub(b"", structural).replace(b'"', b"")  # strings out: syntax remains
    if not brackets:
        return 0
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int32)
    return int(np.cumsum(steps).max())


def _reject_constant(name: str) -> Any:
    raise JsonRejected("non_finite_number", f"{name} is not a finite number; send finite values")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRejected(
            "non_finite_number", f"{text[:32]} overflows a double; send finite values"
        )
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 19:
        raise JsonRejected("non_finite_number", f"integer {text[:24]}... is beyond 64 bits")
    value = int(text)
    if not -_INT_LIMIT <= value < _INT_LIMIT:
        raise JsonRejected("non_finite_number", f"integer {text} is beyond 64 bits")
    return value


def loads(data: bytes | str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse ``data`` as JSON under the rules above; raises :class:`JsonRejected`."""
    raw = data.encode("utf-8", errors="surrogatepass") if isinstance(data, str) else data
    depth = nesting_depth(raw)
    if depth > max_depth:
        raise JsonRejected(
            "json_too_deep", f"JSON nested {depth} deep; at most {max_depth} allowed"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JsonRejected("bad_json", "body is not UTF-8") from None
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except JsonRejected:
        raise
    except (ValueError, RecursionError) as exc:
        raise JsonRejected("bad_json", f"not valid JSON ({type(exc).__name__})") from None


def is_json_content_type(content_type: str | None) -> bool:
    """True for ``application/json``, ``*/*+json`` and a missing type (JSON is the default)."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json") or media == "text/json"
