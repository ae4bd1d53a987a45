"""Safe JSON parsing: the depth scan agrees with the real nesting, and limits hold (pure)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshlab.collector.safejson import JsonRejected, loads, nesting_depth

# Strings full of the characters the scan must not be fooled by.
_TRICKY = st.text(alphabet='[]{}"\\ab\n\u00e9', max_size=8)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TRICKY,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(_TRICKY, children, max_size=4)
    ),
    max_leaves=40,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@given(_JSON)
def test_the_scan_measures_the_real_nesting(value: Any) -> None:
    text = json.dumps(value)
    assert nesting_depth(text.encode()) == depth(value)
    assert loads(text, max_depth=max(depth(value), 1)) == json.loads(text)


def test_a_bracket_bomb_is_refused_fast_without_recursion() -> None:
    started = time.perf_counter()
    for bomb in (b"[" * 4_000_000, b'{"a":' * 800_000):
        with pytest.raises(JsonRejected) as caught:
            loads(bomb, max_depth=64)
        assert caught.value.reason == "json_too_deep"
    assert time.perf_counter() - started < 10  # seconds, on a loaded shared CPU; ~0.2 s alone


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("NaN", "non_finite_number"),
        ("[1, -Infinity]", "non_finite_number"),
        ("1e309", "non_finite_number"),
        ("-1e309", "non_finite_number"),
        ("9223372036854775808", "non_finite_number"),
        ("[1,", "bad_json"),
    ],
)
def test_numbers_must_be_finite(text: str, reason: str) -> None:
    with pytest.raises(JsonRejected) as caught:
        loads(text)
    assert caught.value.reason == reason


def test_finite_extremes_pass() -> None:
    assert loads("[1.7976931348623157e308, -9223372036854775808, 5e-324]") == [
        1.7976931348623157e308,
        -(2**63),
        5e-324,
    ]
