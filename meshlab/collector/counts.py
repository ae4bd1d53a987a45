"""What the collector refused and why, and what it holds: typed counts for the run report.

Every request the collector does not turn into an event is counted under exactly one reason of
:class:`Rejections`; :class:`CollectorCounts` adds the join counters (unpaired, evicted) and the
memory held, so the report can show whether the divergence verdict rests on all that was posted.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, fields

from meshlab.collector.joining import JoinStats


@dataclass(frozen=True)
class Rejections:
    """Refused requests by reason (the HTTP status each is answered with in brackets)."""

    missing_token: int = 0  # no Authorization: Bearer header (401)
    invalid_token: int = 0  # a bearer token that does not match (401)
    tls_handshake_failed: int = 0  # no/untrusted client certificate, or not TLS at all
    too_many_connections: int = 0  # above maxConnections (503, then closed)
    deadline_exceeded: int = 0  # the request did not arrive whole within requestTimeout (408)
    bad_http: int = 0  # malformed request line or headers, headers above 16 KiB (400)
    closed_early: int = 0  # the client hung up before its request was complete
    not_found: int = 0  # not /events, /events/<arm> or /healthz (404)
    method_not_allowed: int = 0  # (405)
    length_required: int = 0  # chunked bodies are not accepted (411)
    body_too_large: int = 0  # above maxBody (413)
    json_too_deep: int = 0  # nested beyond maxJsonDepth (400)
    non_finite_number: int = 0  # NaN, Infinity, 1e400, integers beyond 64 bits (400)
    bad_json: int = 0  # not JSON, not UTF-8 (400)
    bad_event: int = 0  # JSON, but not a usable event: missing id, unknown arm, ... (400)
    memory_budget: int = 0  # would not fit in memoryBudget (503)

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def nonzero(self) -> dict[str, int]:
        """Reason -> count, only the reasons that occurred (for a compact report line)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


REASONS = frozenset(f.name for f in fields(Rejections))


class RejectionCounter:
    """Thread-safe counting by reason; an unknown reason is a programming error."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def count(self, reason: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        with self._lock:
            self._counts[reason] += 1

    def snapshot(self) -> Rejections:
        with self._lock:
            return Rejections(**self._counts)


@dataclass(frozen=True)
class CollectorCounts:
    """Everything the report says about the collector: refusals, joins, memory held."""

    rejections: Rejections
    joins: JoinStats
    pending: int  # halves and unpaired records held now
    held_bytes: int  # their estimated size, plus rows not yet taken
    memory_budget: int

    def to_json(self) -> dict[str, object]:
        """The counts as ``collector.json`` and ``result.json`` hold them."""
        joins = self.joins
        return {
            "rejections": self.rejections.nonzero(),
            "rejected": self.rejections.total,
            "events": joins.events,
            "records": joins.records,
            "pairs": joins.pairs,
            "by_arm": dict(joins.by_arm),
            "unpaired": joins.evicted_unpaired,
            "incomplete": joins.evicted_halves,
            "evicted_for_memory": joins.evicted_memory,
            "duplicates": joins.duplicates,
            "pending_at_end": self.pending,
            "held_bytes": self.held_bytes,
            "memory_budget": self.memory_budget,
        }
