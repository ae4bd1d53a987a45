"""Putting samples from several sources into one stream in order of start time (pure).

Samples reach meshlab in completion order, and from more than one source: the load generator's
requests, and in shadow mode the mirrored copies the mesh records. Each source promises a
*watermark*: it will send no sample that started before it. :class:`OrderedMerge` holds samples
until every source's watermark has passed them, then releases them sorted, so the merged stream
obeys the samples contract (rows in order of start time) while it is still being written.
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

    def pending(self) -> int:
        """Samples held back, waiting for a watermark."""
        return len(self._heap)
