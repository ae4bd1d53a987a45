"""Joining halves into pairs in bounded memory, with a fake clock (no waiting)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meshlab.collector import EventError, InferenceEvent, Joiner, extract_prediction


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def half(kind: str, arm: str, ce_id: str, rid: str, at: float, pred: Any = None) -> InferenceEvent:
    text = json.dumps(pred) if kind == "response" else ""
    return InferenceEvent(kind, ce_id, rid, arm, at, text, has_prediction=kind == "response")  # type: ignore[arg-type]


def full(joiner: Joiner, arm: str, rid: str, pred: Any, at: float = 10.0) -> None:
    joiner.add(half("request", arm, f"{arm}-{rid}", rid, at))
    joiner.add(half("response", arm, f"{arm}-{rid}", rid, at + 0.01, pred))


def test_only_complete_pairs_are_released() -> None:
    joiner = Joiner(clock=FakeClock())
    full(joiner, "baseline", "a", 1)
    joiner.add(half("request", "candidate", "c-a", "a", 10.0))
    assert joiner.take() == []  # the shadow's response is still missing
    joiner.add(half("response", "candidate", "c-a", "a", 10.02, 0))
    rows = joiner.take()
    assert [(r.arm, r.request_id, r.prediction, r.mirrored) for r in rows] == [
        ("baseline", "a", "1", False),
        ("candidate", "a", "0", True),
    ]
    assert rows[1].latency_ms == pytest.approx(20.0)


def test_unmatched_halves_and_records_are_evicted_after_the_ttl() -> None:
    clock = FakeClock()
    joiner = Joiner(ttl=30, clock=clock)
    joiner.add(half("request", "baseline", "lost", "r1", 0.0))  # its response never comes
    full(joiner, "baseline", "r2", 1)  # its shadow never comes
    assert joiner.pending == 2
    clock.now = 30.0
    joiner.take()
    assert joiner.pending == 2  # exactly the TTL: kept
    clock.now = 30.5
    assert joiner.take() == []
    assert joiner.pending == 0
    assert joiner.stats.evicted_halves == 1 and joiner.stats.evicted_unpaired == 1
    # A late shadow for an evicted record does not resurrect it: it waits alone, then goes.
    full(joiner, "candidate", "r2", 0)
    assert joiner.take() == [] and joiner.pending == 1


def test_memory_is_bounded_oldest_first() -> None:
    clock = FakeClock()
    joiner = Joiner(max_pending=100, ttl=1e9, clock=clock)
    for i in range(1000):
        clock.now = float(i)
        joiner.add(half("request", "baseline", f"id-{i}", f"r{i}", float(i)))
    assert joiner.pending == 100
    assert joiner.stats.evicted_halves == 900
    joiner.add(half("response", "baseline", "id-999", "r999", 999.5, 1))  # newest still joins
    assert joiner.stats.records == 1


def test_duplicates_are_counted_not_doubled() -> None:
    joiner = Joiner(clock=FakeClock())
    full(joiner, "baseline", "a", 1)
    full(joiner, "baseline", "a", 1)  # a retried delivery
    full(joiner, "candidate", "a", 1)
    assert len(joiner.take()) == 2
    assert joiner.stats.duplicates == 2


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"predictions": [0.7, 0.1]}, (True, 0.7)),
        ({"predictions": [{"label": "fraud"}]}, (True, {"label": "fraud"})),
        ({"outputs": [{"name": "o", "shape": [2], "datatype": "FP32", "data": [3, 4]}]}, (True, 3)),
        ({"predictions": []}, (False, None)),
        ({"outputs": [{"data": []}]}, (False, None)),
        ([1, 2], (False, None)),
        (None, (False, None)),
    ],
)
def test_prediction_extraction_v1_and_v2(payload: Any, expected: tuple[bool, Any]) -> None:
    assert extract_prediction(payload) == expected


def test_mirrored_release_gives_shadow_rows_without_waiting_for_the_primary() -> None:
    joiner = Joiner(release="mirrored", clock=FakeClock())
    full(joiner, "candidate", "a", 0.9)
    full(joiner, "baseline", "a", 0.1)  # counted, not released: the load generator has it
    rows = joiner.take()
    assert [(r.arm, r.request_id, r.prediction, r.mirrored) for r in rows] == [
        ("candidate", "a", "0.9", True)
    ]
    assert joiner.pending == 0 and joiner.stats.by_arm == {"baseline": 1, "candidate": 1}


def test_memory_budget_evicts_the_largest_pending_first_and_counts_it() -> None:
    clock = FakeClock()
    budget = 200_000
    joiner = Joiner(release="pairs", memory_budget=budget, ttl=1e9, clock=clock)
    big = "x" * 30_000
    for i in range(100):  # unseen ids, each holding a 30 kB prediction: 3 MB offered
        clock.now = float(i)
        joiner.add(half("response", "baseline", f"ce-{i}", f"r{i}", float(i), big))
        assert joiner.held_bytes <= budget
    assert joiner.stats.evicted_memory == 100 - joiner.pending
    assert 4 <= joiner.pending <= 7
    full(joiner, "baseline", "legit", 1, at=200.0)  # small and new: joins despite the pressure
    full(joiner, "candidate", "legit", 0, at=200.0)
    assert [r.request_id for r in joiner.take()] == ["legit", "legit"]
    # A small half waiting for its partner is not flushed out by later large ones.
    joiner.add(half("request", "baseline", "ce-small", "small", 300.0))
    for i in range(100, 120):
        joiner.add(half("response", "baseline", f"ce-{i}", f"r{i}", 300.0, big))
        assert joiner.held_bytes <= budget
    joiner.add(half("response", "baseline", "ce-small", "small", 300.1, 7))
    full(joiner, "candidate", "small", 7, at=300.0)
    assert [r.request_id for r in joiner.take()] == ["small", "small"]


def test_an_event_larger_than_the_budget_is_refused_with_the_reason() -> None:
    joiner = Joiner(memory_budget=10_000, clock=FakeClock())
    with pytest.raises(EventError) as refused:
        joiner.add(half("response", "baseline", "ce", "r", 0.0, "x" * 20_000))
    assert refused.value.reason == "memory_budget"
    assert joiner.pending == 0 and joiner.stats.events == 0
