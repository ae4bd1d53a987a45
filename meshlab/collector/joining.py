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

Anything unmatched after ``ttl`` seconds is evicted and counted (a lost response, a request the
shadow never got, an error response KServe does not log), and at most ``max_pending`` halves are
kept: the oldest go first. ``latency_ms`` of a KServe row is the gap between its request and
response events' times: approximate (the logger stamps events when it sends them), so latency
comparisons should use the load generator's samples or Prometheus instead.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from meshlab.collector.events import InferenceEvent
from meshlab.samples import ARMS, Sample

Clock = Callable[[], float]
Release = Literal["pairs", "mirrored"]


@dataclass
class _Half:
    request: InferenceEvent | None = None
    response: InferenceEvent | None = None
    seen_at: float = 0.0


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
    duplicates: int = 0
    by_arm: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ARMS, 0))


def _record(event: InferenceEvent, request: InferenceEvent | None) -> ArmRecord:
    if event.kind == "record":
        latency = event.latency_ms if event.latency_ms is not None else 0.0
        start = event.time
    else:
        start = request.time if request is not None else event.time
        latency = max(0.0, (event.time - start) * 1000.0)
    prediction = json.dumps(event.prediction, separators=(",", ":")) if event.has_prediction else ""
    return ArmRecord(event.arm, event.request_id, start, latency, event.status, prediction)


class Joiner:
    """Thread-safe join of posted events into released sample pairs."""

    def __init__(
        self,
        *,
        mirrored_arm: str = "candidate",
        release: Release = "pairs",
        ttl: float = 60.0,
        max_pending: int = 100_000,
        clock: Clock = time.monotonic,
    ) -> None:
        if mirrored_arm not in ARMS:
            raise ValueError(f"mirrored_arm must be one of {ARMS}")
        if ttl <= 0 or max_pending <= 0:
            raise ValueError("ttl and max_pending must be > 0")
        if release not in ("pairs", "mirrored"):
            raise ValueError("release must be 'pairs' or 'mirrored'")
        self.mirrored_arm = mirrored_arm
        self.release = release
        self.ttl = ttl
        self.max_pending = max_pending
        self._clock = clock
        self._lock = threading.Lock()
        self._halves: OrderedDict[tuple[str, str], _Half] = OrderedDict()
        self._records: OrderedDict[str, tuple[dict[str, ArmRecord], float]] = OrderedDict()
        self._done: set[tuple[str, str]] = set()
        self._ready: list[Sample] = []
        self.stats = JoinStats()

    @property
    def pending(self) -> int:
        """Halves and unpaired records held in memory."""
        with self._lock:
            return len(self._halves) + len(self._records)

    def add(self, event: InferenceEvent) -> None:
        """Take one event; completes an arm record and possibly a pair."""
        with self._lock:
            now = self._clock()
            self._evict(now)
            self.stats.events += 1
            if event.kind == "record":
                self._add_record(_record(event, None), now)
                return
            key = (event.arm, event.event_id)
            if key in self._done:
                self.stats.duplicates += 1
                return
            half = self._halves.pop(key, None) or _Half(seen_at=now)
            if getattr(half, event.kind) is not None:
                self.stats.duplicates += 1
            setattr(half, event.kind, event)
            if half.request is not None and half.response is not None:
                self._done.add(key)
                self._add_record(_record(half.response, half.request), now)
            else:
                self._halves[key] = half  # re-inserted at the end: most recent last
                self._bound()

    def _add_record(self, record: ArmRecord, now: float) -> None:
        self.stats.records += 1
        self.stats.by_arm[record.arm] += 1
        if self.release == "mirrored":
            # The primary rows come from the load generator: release shadow rows on their own.
            if record.arm == self.mirrored_arm:
                self._ready.append(self._sample(record))
            return
        arms, seen_at = self._records.pop(record.request_id, ({}, now))
        if record.arm in arms:
            self.stats.duplicates += 1
        arms[record.arm] = record
        if len(arms) < len(ARMS):
            self._records[record.request_id] = (arms, seen_at)
            self._bound()
            return
        self.stats.pairs += 1
        self._ready.extend(self._sample(arms[arm]) for arm in ARMS)

    def _sample(self, r: ArmRecord) -> Sample:
        return Sample(
            r.timestamp,
            r.arm,
            r.request_id,
            r.latency_ms,
            r.status,
            r.prediction,
            mirrored=(r.arm == self.mirrored_arm),
        )

    def _evict(self, now: float) -> None:
        cutoff = now - self.ttl
        while self._halves and next(iter(self._halves.values())).seen_at < cutoff:
            self._halves.popitem(last=False)
            self.stats.evicted_halves += 1
        while self._records and next(iter(self._records.values()))[1] < cutoff:
            self._records.popitem(last=False)
            self.stats.evicted_unpaired += 1
        if len(self._done) > self.max_pending:
            self._done.clear()  # only guards against late duplicates; forgetting is safe

    def _bound(self) -> None:
        while len(self._halves) + len(self._records) > self.max_pending:
            if self._halves and (
                not self._records
                or next(iter(self._halves.values())).seen_at
                <= next(iter(self._records.values()))[1]
            ):
                self._halves.popitem(last=False)
                self.stats.evicted_halves += 1
            else:
                self._records.popitem(last=False)
                self.stats.evicted_unpaired += 1

    def take(self) -> list[Sample]:
        """The pairs completed since the last call (two rows each), in order of start time."""
        with self._lock:
            self._evict(self._clock())
            ready, self._ready = self._ready, []
        return sorted(ready, key=lambda s: (s.timestamp, s.request_id, s.mirrored))
