"""Putting samples from several sources into one stream in order of start time (pure).

Samples reach meshlab in completion order, and from more than one source: the load generator's
requests, the mirrored copies the local mesh's tap records, the shadow's predictions the collector
joins, Prometheus's per-window deltas. Each source promises a *watermark*: it will send no sample
that started before it. :class:`OrderedMerge` holds samples until every source's watermark has
passed them, then releases them sorted, so the merged stream obeys the samples contract (rows in
order of start time) while it is still being written.

A sample that arrives after a sample that started later has been released (its source broke its
promise: a request slower than the source's lag allowed) is *late*: it cannot join the ordered
stream without re-sorting what was already handed on, so it is handed on by itself in
:attr:`SampleBatch.late` and counted per source (:attr:`OrderedMerge.late_by_source`). This module
sits below every layer (it imports only the samples), so the load generator, the collector and
the metrics sources can all use it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass

from meshlab.samples import Sample


@dataclass(frozen=True)
class SampleBatch:
    """Samples in order of start time; no later batch of the stream starts before ``watermark``.

    ``late`` holds samples that arrived after their watermark had passed (a request slower than the
    promise allowed): kept, counted, but outside the ordered stream.
    """

    samples: tuple[Sample, ...]
    watermark: float
    late: tuple[Sample, ...] = ()


class OrderedMerge:
    """Merge samples from named sources into one ordered stream, released by watermark."""

    def __init__(self, sources: Iterable[str]) -> None:
        self._marks = {name: -math.inf for name in sources}
        if not self._marks:
            raise ValueError("OrderedMerge needs at least one source")
        self._heap: list[tuple[float, int, Sample]] = []
        self._seq = 0  # ties keep arrival order and keep Sample out of comparisons
        self._released = -math.inf
        self._late: list[Sample] = []
        self.late_by_source = dict.fromkeys(self._marks, 0)  # late samples so far, per source

    @property
    def watermark(self) -> float:
        """Every sample starting before this has been released (or counted late)."""
        return min(self._marks.values())

    def add(self, source: str, samples: Iterable[Sample], watermark: float | None = None) -> None:
        """Take samples from ``source`` and, optionally, advance its watermark (never backwards)."""
        if source not in self._marks:
            raise KeyError(f"unknown source {source!r}; known: {', '.join(self._marks)}")
        for sample in samples:
            if sample.timestamp < self._released:
                self._late.append(sample)
                self.late_by_source[source] += 1
                continue
            heapq.heappush(self._heap, (sample.timestamp, self._seq, sample))
            self._seq += 1
        if watermark is not None:
            self._marks[source] = max(self._marks[source], watermark)

    def finish(self, source: str) -> None:
        """``source`` will send nothing more."""
        self.add(source, (), math.inf)

    def release(self) -> SampleBatch:
        """The samples every source has moved past, in order of start time."""
        mark = self.watermark
        out: list[Sample] = []
        while self._heap and self._heap[0][0] < mark:
            out.append(heapq.heappop(self._heap)[2])
        if out:
            self._released = max(self._released, out[-1].timestamp)
        late, self._late = tuple(self._late), []
        return SampleBatch(tuple(out), mark, late)

    @property
    def late(self) -> int:
        """Late samples so far, from every source."""
        return sum(self.late_by_source.values())

    def mark(self, source: str) -> float:
        """The watermark ``source`` has promised so far."""
        return self._marks[source]

    def pending(self) -> int:
        """Samples held back, waiting for a watermark."""
        return len(self._heap)
