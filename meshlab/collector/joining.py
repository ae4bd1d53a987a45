"""Joining logged halves into paired samples, in bounded memory (pure; the clock is injected).

Two joins:

1. **request + response** of one arm, by CloudEvent id (KServe gives both halves the same
   ``ce-id``). A plain JSON record is already whole.
2. **primary + shadow**, by request id (``X-Request-Id``): the baseline's record and the
   candidate's record of the same client request. Only complete pairs are released, as two
   :class:`meshlab.samples.Sample` rows sharing the request id; the mirrored arm's row has
   ``mirrored=True``, which is how the divergence metric pairs them.

With ``release="mirrored"`` the second join is skipped: each completed record of the mirrored arm
is released on its own, for runs where the load generator already records the primary's rows
(same ``x-request-id``) and only the shadow's responses are lost to Istio.

Memory is bounded three ways, and every loss is counted in :class:`JoinStats`:

* anything unmatched after ``ttl`` seconds is evicted (a lost response, a request the shadow never
  got, an error response KServe does not log);
* at most ``max_pending`` halves and unpaired records are kept, the oldest go first;
* their estimated size, plus rows released but not yet taken, stays under ``memory_budget`` bytes:
  the *largest* pending go first (``evicted_memory``) -- they cost the most, and evicting by age
  would let a few huge posts flush many small legitimate halves waiting for their partner; an
  event that cannot fit even then (rows not taken fill the budget, or the event alone is larger)
  is refused with ``EventError(reason="memory_budget")``.

``latency_ms`` of a KServe row is the gap between its request and response events' times:
approximate (the logger stamps events when it sends them), so latency comparisons should use the
load generator's samples or Prometheus instead.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Literal

from meshlab.clock import Clock
from meshlab.collector.events import EventError, InferenceEvent
from meshlab.samples import ALL_ARMS, ARMS, Sample

Release = Literal["pairs", "mirrored"]

# What one pending entry costs beyond its strings: objects, dict slots, floats (measured ~450 B).
ENTRY_OVERHEAD = 512


@dataclass
class _Half:
    request: InferenceEvent | None = None
    response: InferenceEvent | None = None
    seen_at: float = 0.0
    size: int = 0
    seq: int = 0  # which heap entry is current


@dataclass
class _Unpaired:
    arms: dict[str, ArmRecord]
    seen_at: float
    size: int = 0
    seq: int = 0


@dataclass(frozen=True)
class ArmRecord:
    """One arm's view of one request: when, how long, what it predicted."""

    arm: str
    request_id: str
    timestamp: float
    latency_ms: float
    status: int
    prediction: str  # JSON text, "" for none


@dataclass
class JoinStats:
    """Counters for the report: what came in and what could not be paired."""

    events: int = 0
    records: int = 0
    pairs: int = 0
    evicted_halves: int = 0
    evicted_unpaired: int = 0
    evicted_memory: int = 0  # pending entries dropped to stay under the memory budget
    duplicates: int = 0
    by_arm: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ARMS, 0))
    other_arm: int = 0  # records of an arm this join does not pair (a control without one)

    def copy(self) -> JoinStats:
        return replace(self, by_arm=dict(self.by_arm))


def _event_size(event: InferenceEvent) -> int:
    return ENTRY_OVERHEAD + len(event.prediction) + len(event.request_id) + len(event.event_id)


def _record_size(record: ArmRecord) -> int:
    return ENTRY_OVERHEAD + len(record.prediction) + len(record.request_id)


def _record(event: InferenceEvent, request: InferenceEvent | None) -> ArmRecord:
    if event.kind == "record":
        latency = event.latency_ms if event.latency_ms is not None else 0.0
        start = event.time
    else:
        start = request.time if request is not None else event.time
        latency = max(0.0, (event.time - start) * 1000.0)
    prediction = event.prediction if event.has_prediction else ""
    return ArmRecord(event.arm, event.request_id, start, latency, event.status, prediction)


class Joiner:
    """Thread-safe join of posted events into released sample pairs."""

    def __init__(
        self,
        *,
        mirrored_arm: str = "candidate",
        control: bool = False,
        release: Release = "pairs",
        ttl: float = 60.0,
        max_pending: int = 100_000,
        memory_budget: int = 64 * 1024 * 1024,
        clock: Clock = time.monotonic,
    ) -> None:
        if mirrored_arm not in ARMS:
            raise ValueError(f"mirrored_arm must be one of {ARMS}")
        # With a control (spec.control) a shadow request is complete once the primary and both
        # mirrored copies arrived; the control's copy is mirrored like the candidate's.
        self.arms: tuple[str, ...] = ALL_ARMS if control else ARMS
        self.mirrored_arms = {mirrored_arm, "control"} if control else {mirrored_arm}
        if ttl <= 0 or max_pending <= 0 or memory_budget <= 0:
            raise ValueError("ttl, max_pending and memory_budget must be > 0")
        if release not in ("pairs", "mirrored"):
            raise ValueError("release must be 'pairs' or 'mirrored'")
        self.mirrored_arm = mirrored_arm
        self.release = release
        self.ttl = ttl
        self.max_pending = max_pending
        self.memory_budget = memory_budget
        self._clock = clock
        self._lock = threading.Lock()
        self._halves: OrderedDict[tuple[str, str], _Half] = OrderedDict()
        self._records: OrderedDict[str, _Unpaired] = OrderedDict()
        # (-size, seq, key) of every pending entry, largest first; stale entries skipped lazily.
        self._by_size: list[tuple[int, int, tuple[str, str] | str]] = []
        self._seq = 0
        # Completed (arm, event id) keys, only to count late duplicates: forgetting them is safe.
        self._done: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._ready: list[Sample] = []
        self._pending_bytes = 0
        self._done_bytes = 0
        self._ready_bytes = 0
        self.stats = JoinStats()

    @property
    def pending(self) -> int:
        """Halves and unpaired records held in memory."""
        with self._lock:
            return len(self._halves) + len(self._records)

    @property
    def held_bytes(self) -> int:
        """Estimated bytes held: pending entries, remembered ids and rows not yet taken."""
        with self._lock:
            return self._pending_bytes + self._done_bytes + self._ready_bytes

    def add(self, event: InferenceEvent) -> None:
        """Take one event; completes an arm record and possibly a pair.

        Raises ``EventError(reason="memory_budget")`` when it cannot be held within the budget.
        """
        with self._lock:
            now = self._clock()
            self._evict(now)
            size = _event_size(event)
            if size + self._ready_bytes > self.memory_budget:
                raise EventError(
                    f"memory budget of {self.memory_budget} bytes is full of rows not yet taken "
                    "or this event alone exceeds it; retry later",
                    "memory_budget",
                )
            self.stats.events += 1
            if event.kind == "record":
                self._add_record(_record(event, None), now)
            else:
                self._add_half(event, now, size)
            self._bound()

    def _add_half(self, event: InferenceEvent, now: float, size: int) -> None:
        key = (event.arm, event.event_id)
        if key in self._done:
            self.stats.duplicates += 1
            return
        half = self._halves.pop(key, None)
        if half is None:
            half = _Half(seen_at=now)
        else:
            self._pending_bytes -= half.size
        if getattr(half, event.kind) is not None:
            self.stats.duplicates += 1
        setattr(half, event.kind, event)
        if half.request is not None and half.response is not None:
            self._done[key] = len(key[0]) + len(key[1]) + 100
            self._done_bytes += self._done[key]
            self._add_record(_record(half.response, half.request), now)
        else:
            half.size = sum(_event_size(e) for e in (half.request, half.response) if e is not None)
            half.seq = self._push(half.size, key)
            self._pending_bytes += half.size
            self._halves[key] = half  # re-inserted at the end: most recent last

    def _add_record(self, record: ArmRecord, now: float) -> None:
        self.stats.records += 1
        if record.arm not in self.arms:
            self.stats.other_arm += 1
            return
        self.stats.by_arm[record.arm] = self.stats.by_arm.get(record.arm, 0) + 1
        if self.release == "mirrored":
            # The primary rows come from the load generator: release shadow rows on their own.
            if record.arm in self.mirrored_arms:
                self._release(record)
            return
        unpaired = self._records.pop(record.request_id, None) or _Unpaired({}, now)
        self._pending_bytes -= unpaired.size
        if record.arm in unpaired.arms:
            self.stats.duplicates += 1
        unpaired.arms[record.arm] = record
        if len(unpaired.arms) < len(self.arms):
            unpaired.size = sum(_record_size(r) for r in unpaired.arms.values())
            unpaired.seq = self._push(unpaired.size, record.request_id)
            self._records[record.request_id] = unpaired
            self._pending_bytes += unpaired.size
            return
        self.stats.pairs += 1
        for arm in self.arms:
            self._release(unpaired.arms[arm])

    def _push(self, size: int, key: tuple[str, str] | str) -> int:
        self._seq += 1
        heapq.heappush(self._by_size, (-size, self._seq, key))
        return self._seq

    def _release(self, r: ArmRecord) -> None:
        self._ready_bytes += _record_size(r)
        self._ready.append(
            Sample(
                r.timestamp,
                r.arm,
                r.request_id,
                r.latency_ms,
                r.status,
                r.prediction,
                mirrored=(r.arm in self.mirrored_arms),
            )
        )

    def _drop_oldest_half(self) -> None:
        _, half = self._halves.popitem(last=False)
        self._pending_bytes -= half.size
        self.stats.evicted_halves += 1

    def _drop_oldest_record(self) -> None:
        _, unpaired = self._records.popitem(last=False)
        self._pending_bytes -= unpaired.size
        self.stats.evicted_unpaired += 1

    def _drop_oldest(self) -> None:
        if self._halves and (
            not self._records
            or next(iter(self._halves.values())).seen_at
            <= next(iter(self._records.values())).seen_at
        ):
            self._drop_oldest_half()
        else:
            self._drop_oldest_record()

    def _evict(self, now: float) -> None:
        cutoff = now - self.ttl
        while self._halves and next(iter(self._halves.values())).seen_at < cutoff:
            self._drop_oldest_half()
        while self._records and next(iter(self._records.values())).seen_at < cutoff:
            self._drop_oldest_record()

    def _bound(self) -> None:
        while len(self._done) > self.max_pending:
            self._done_bytes -= self._done.popitem(last=False)[1]
        while len(self._halves) + len(self._records) > self.max_pending:
            self._drop_oldest()
        while self._done and self._held() > self.memory_budget:
            self._done_bytes -= self._done.popitem(last=False)[1]
        while self._by_size and self._held() > self.memory_budget:
            self._drop_largest()
        if len(self._by_size) > 2 * (len(self._halves) + len(self._records)) + 64:
            # Compact: keep only the current entries.
            current: list[tuple[int, int, tuple[str, str] | str]] = [
                (-half.size, half.seq, key) for key, half in self._halves.items()
            ]
            current += [(-rec.size, rec.seq, rid) for rid, rec in self._records.items()]
            heapq.heapify(current)
            self._by_size = current

    def _drop_largest(self) -> None:
        """Evict the largest pending entry (skipping heap entries that are no longer current)."""
        _, seq, key = heapq.heappop(self._by_size)
        entry = self._records.get(key) if isinstance(key, str) else self._halves.get(key)
        if entry is None or entry.seq != seq:
            return  # paired, evicted or re-sized since: stale
        if isinstance(key, str):
            del self._records[key]
        else:
            del self._halves[key]
        self._pending_bytes -= entry.size
        self.stats.evicted_memory += 1

    def _held(self) -> int:
        return self._pending_bytes + self._done_bytes + self._ready_bytes

    def take(self) -> list[Sample]:
        """The pairs completed since the last call (two rows each), in order of start time."""
        with self._lock:
            self._evict(self._clock())
            ready, self._ready = self._ready, []
            self._ready_bytes = 0
        return sorted(ready, key=lambda s: (s.timestamp, s.request_id, s.mirrored))
