"""The load generator's rows plus the collector's, as one live source for the controller.

In a cluster shadow test the load generator records the primary's responses but never the
shadow's (Istio drops them); the shadow's predictions reach the collector through KServe's logger.
:class:`ShadowRows` is the collector's side as a :class:`~meshlab.live.LiveSamples`: the rows its
:class:`~meshlab.collector.joining.Joiner` released (use ``release="mirrored"`` so only the
shadow's rows come, the primary's being the load generator's with the same request id), with a
watermark ``lag`` seconds behind the wall clock (a logger delivery slower than that is late:
counted, fed on arrival), and after the load ends ``settle`` seconds more for late deliveries.
:class:`CollectorLiveSamples` merges the load and the shadow rows (and, with ``also``, other
sources such as Prometheus's deltas) in the one ordered merge, counts the request ids still
unpaired, and says when the shadow has gone quiet while primaries keep coming
(:meth:`CollectorLiveSamples.silence`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping

from meshlab.clock import Clock, time_of_day
from meshlab.collector.server import Collector
from meshlab.live import LiveSamples, MergedSamples
from meshlab.samples import Sample


class ShadowRows:
    """The shadow rows the collector joined, with a watermark ``lag`` seconds behind ``wall``."""

    def __init__(
        self,
        collector: Collector,
        ended: Callable[[], bool],
        *,
        lag: float = 2.0,
        settle: float = 5.0,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        if lag < 0 or settle < 0:
            raise ValueError("lag and settle must be >= 0 seconds")
        self.collector = collector
        self.ended = ended
        self.lag = lag
        self.settle = settle
        self._clock = clock
        self._wall = wall
        self._watermark = -math.inf
        self._ended_at: float | None = None

    def poll(self, timeout: float) -> list[Sample]:
        now = self._wall()
        rows = self.collector.joiner.take()
        self._watermark = max(self._watermark, now - self.lag)
        self._note_end()
        return rows

    def _note_end(self) -> None:
        if self._ended_at is None and self.ended():
            self._ended_at = self._clock()

    @property
    def watermark(self) -> float:
        return math.inf if self.finished else self._watermark

    @property
    def finished(self) -> bool:
        self._note_end()
        return self._ended_at is not None and self._clock() >= self._ended_at + self.settle

    def stop(self) -> None:
        """Nothing to stop here: the run's closer stops the listener."""

    def after_rollback(self) -> None:
        """Nothing to do: the collector's rows never fail a rollback."""


class CollectorLiveSamples(MergedSamples):
    """Load-generator rows and collector rows, in one ordered merge (see the module docstring).

    ``quiet_after``: how long the shadow may stay silent while primaries arrive before
    :meth:`silence` names it.
    """

    def __init__(
        self,
        collector: Collector,
        load: LiveSamples,
        *,
        settle: float = 5.0,
        lag: float = 2.0,
        quiet_after: float = 10.0,
        also: Mapping[str, LiveSamples] | None = None,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
    ) -> None:
        self.collector = collector
        self.settle = settle
        self.quiet_after = quiet_after
        self._clock = clock
        self._wall = wall
        self.shadow = ShadowRows(
            collector,
            lambda: load.finished,
            lag=lag,
            settle=settle,
            clock=clock,
            wall=wall,
        )
        super().__init__(
            {"load": load, **(also or {}), "collector": self.shadow}, observe=self._arrived
        )
        self._primary: set[str] = set()  # request ids of primaries still without a shadow row
        self._shadow: set[str] = set()  # shadow rows still without a primary
        self._started_at = (clock(), wall())
        # When the last shadow row arrived (this source's clock, and the wall clock); None: none
        # yet. silence() names a silent logger with it.
        self.last_shadow_at: float | None = None
        self._last_shadow_wall: float | None = None
        self._primaries_since_shadow = 0

    def _arrived(self, source: str, rows: list[Sample]) -> None:
        if source not in ("load", "collector"):
            return  # e.g. Prometheus's deltas: no request ids to pair
        if any(row.mirrored for row in rows):
            self.last_shadow_at, self._last_shadow_wall = self._clock(), self._wall()
            self._primaries_since_shadow = 0
        for row in rows:
            mine, other = (
                (self._shadow, self._primary) if row.mirrored else (self._primary, self._shadow)
            )
            if not row.mirrored and row.arm == "baseline":
                self._primaries_since_shadow += 1
            if row.request_id in other:
                other.discard(row.request_id)
            else:
                mine.add(row.request_id)

    @property
    def unpaired(self) -> tuple[int, int]:
        """(primary requests without a shadow prediction, shadow predictions without a primary)."""
        return len(self._primary), len(self._shadow)

    def silence(self) -> str | None:
        """ "no shadow predictions since T (collector: N primaries unpaired)" when the shadow has
        been silent for ``quiet_after`` seconds while primaries kept arriving; else None."""
        since, since_wall = (
            (self.last_shadow_at, self._last_shadow_wall)
            if self.last_shadow_at is not None and self._last_shadow_wall is not None
            else self._started_at
        )
        if self._primaries_since_shadow == 0 or self._clock() - since < self.quiet_after:
            return None
        return (
            f"no shadow predictions since {time_of_day(since_wall)} (collector: {len(self._primary)} "
            f"primaries unpaired, {self._primaries_since_shadow} since the last shadow row)"
        )
