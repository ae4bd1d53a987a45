"""The load generator's rows plus the collector's, as one live source for the controller.

In a cluster shadow test the load generator records the primary's responses but never the
shadow's (Istio drops them); the shadow's predictions reach the collector through KServe's logger.
:class:`CollectorLiveSamples` has the shape of ``meshlab.experiment.ports.LiveSamples`` and merges
both: use a :class:`~meshlab.collector.joining.Joiner` with ``release="mirrored"`` so only the
shadow's rows are added (the primary's come from the load generator with the same request id).
After the load ends it keeps polling for ``settle`` seconds, for late logger deliveries.
"""

from __future__ import annotations

import time
from typing import Protocol

from meshlab.clock import Clock
from meshlab.collector.server import Collector
from meshlab.samples import Sample


class TrafficSource(Protocol):
    """The load generator, as the controller sees it (``LiveSamples``)."""

    def poll(self, timeout: float) -> list[Sample]: ...

    @property
    def finished(self) -> bool: ...

    def stop(self) -> None: ...


class CollectorLiveSamples:
    """Load-generator rows and collector rows, merged in start-time order per poll."""

    def __init__(
        self,
        collector: Collector,
        load: TrafficSource,
        *,
        settle: float = 5.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.collector = collector
        self.load = load
        self.settle = settle
        self._clock = clock
        self._ended_at: float | None = None
        self._primary: set[str] = set()  # request ids of primaries still without a shadow row
        self._shadow: set[str] = set()  # shadow rows still without a primary
        # When the last shadow row arrived (this source's clock); None: none yet. A controller
        # can name a silent logger with it ("no candidate samples for 30 s").
        self.last_shadow_at: float | None = None

    def poll(self, timeout: float) -> list[Sample]:
        rows = self.load.poll(timeout) + self.collector.joiner.take()
        if any(row.mirrored for row in rows):
            self.last_shadow_at = self._clock()
        for row in rows:
            mine, other = (
                (self._shadow, self._primary) if row.mirrored else (self._primary, self._shadow)
            )
            if row.request_id in other:
                other.discard(row.request_id)
            else:
                mine.add(row.request_id)
        if self._ended_at is None and self.load.finished:
            self._ended_at = self._clock()
        return sorted(rows, key=lambda s: s.timestamp)

    @property
    def unpaired(self) -> tuple[int, int]:
        """(primary requests without a shadow prediction, shadow predictions without a primary)."""
        return len(self._primary), len(self._shadow)

    @property
    def finished(self) -> bool:
        if self._ended_at is None and self.load.finished:
            self._ended_at = self._clock()
        return self._ended_at is not None and self._clock() >= self._ended_at + self.settle

    def stop(self) -> None:
        self.load.stop()

    def after_rollback(self) -> None:
        """Nothing to do: the collector's rows never fail a rollback (``LiveSamples`` contract)."""
