"""The live-sample contract every source implements, and the one merge that orders their rows.

A live run reads requests as they complete from several sources at once: the load generator's
rows, the mirrored copies the local mesh's tap captured, the shadow's predictions the collector
joined, Prometheus's per-window deltas. Each implements :class:`LiveSamples`, which includes a
*watermark*: no later ``poll`` returns a row that started before it. :class:`MergedSamples` is
itself a :class:`LiveSamples`: it polls every source, feeds one
:class:`~meshlab.ordering.OrderedMerge`, and hands on rows in order of start time as soon as
every source has passed them.

**Late rows are fed to the statistics on arrival, and counted** (:attr:`MergedSamples.late`,
per source in :attr:`MergedSamples.late_by_source`). A late row is a request slower than its
source's lag allowed. Dropping it would censor exactly the slowest requests, where a latency
regression or a timeout shows, and bias the verdict towards promote; the comparison's statistics
(histograms, counts, pairs by request id) do not depend on the order of rows, so a late row only
counts at a later look than its start time would put it, and a look already taken (a decision
already made) is never revisited. The samples file is still written in start-time order.

This module sits below every layer (it imports only the samples and the merge), so the collector
and the metrics sources type their inputs with it; ``meshlab.experiment.ports`` re-exports
:class:`LiveSamples` for the controller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from meshlab.ordering import OrderedMerge
from meshlab.samples import Sample


class LiveSamples(Protocol):
    """Requests as they complete, from one source or several merged.

    Optional, looked up by duck typing: ``silence() -> str | None`` (why the source has gone
    quiet, for the reason an undecided run gives; see :func:`silence_of`) and ``outage_status``
    (an ongoing outage of a metrics backend).
    """

    def poll(self, timeout: float) -> list[Sample]:
        """Samples that arrived since the last call, waiting at most ``timeout`` seconds for some."""
        ...

    @property
    def watermark(self) -> float:
        """No later :meth:`poll` returns a row that started before this (epoch seconds; -inf
        before the source can promise anything, +inf once it is finished)."""
        ...

    @property
    def finished(self) -> bool:
        """True once the source will produce nothing more (load ended or failed)."""
        ...

    def stop(self) -> None:
        """Stop producing (stop the load); safe to call twice."""
        ...

    def after_rollback(self) -> None:
        """The routes are back on the baseline: from now on ``poll`` must not raise for a source
        that failed (the drain only times the last candidate request). A no-op for most sources."""
        ...


def silence_of(source: object) -> str | None:
    """The source's one-line reason for having gone quiet (its ``silence()``), or None."""
    silence = getattr(source, "silence", None)
    if not callable(silence):
        return None
    reason = silence()
    return reason if isinstance(reason, str) and reason else None


def flush_rows(source: object) -> list[Sample]:
    """At the end of a run: every row the source still holds (its ``flush()``), or [] if none."""
    flush = getattr(source, "flush", None)
    return list(flush()) if callable(flush) else []


Observer = Callable[[str, list[Sample]], None]


class MergedSamples:
    """Several named :class:`LiveSamples` as one, rows released in start-time order by watermark.

    ``poll(timeout)`` waits on the first source (the load generator, which blocks until rows
    come) and takes what the others hold without waiting. ``observe`` sees each source's rows as
    they arrive, with the source's name (e.g. to count request ids still unpaired).
    """

    def __init__(
        self, sources: Mapping[str, LiveSamples], *, observe: Observer | None = None
    ) -> None:
        if not sources:
            raise ValueError("MergedSamples needs at least one source")
        self.sources = dict(sources)
        self._merge = OrderedMerge(self.sources)
        self._observe = observe
        self._done: set[str] = set()

    def poll(self, timeout: float) -> list[Sample]:
        wait = timeout
        for name, source in self.sources.items():
            if name in self._done:
                continue
            rows = source.poll(wait)
            wait = 0.0
            if rows and self._observe is not None:
                self._observe(name, rows)
            if source.finished:
                self._merge.add(name, rows)
                self._merge.finish(name)
                self._done.add(name)
            else:
                self._merge.add(name, rows, source.watermark)
        batch = self._merge.release()
        return [*batch.samples, *batch.late]

    def flush(self) -> list[Sample]:
        """The run is over: what every source still has, and every row held back, in order.

        Each source is polled once more without waiting (after the load was stopped and joined, its
        last rows), then every watermark is taken as passed. Rows behind the stream are late as
        always. The samples file then holds every request, whatever the lags held at the end.
        """
        rows: list[Sample] = []
        for name, source in self.sources.items():
            if name not in self._done:
                new = source.poll(0.0)
                if new and self._observe is not None:
                    self._observe(name, new)
                self._merge.add(name, new)
                self._merge.finish(name)
                self._done.add(name)
        batch = self._merge.release()
        rows += [*batch.samples, *batch.late]
        return rows

    @property
    def watermark(self) -> float:
        return self._merge.watermark

    @property
    def late(self) -> int:
        """Rows fed on arrival because a row that started later had already been handed on."""
        return self._merge.late

    @property
    def late_by_source(self) -> dict[str, int]:
        return dict(self._merge.late_by_source)

    @property
    def pending(self) -> int:
        """Rows held back until every source's watermark passes them."""
        return self._merge.pending()

    @property
    def finished(self) -> bool:
        # Every source done and nothing held back (a source reports done only once drained).
        done = all(n in self._done or s.finished for n, s in self.sources.items())
        return done and self._merge.pending() == 0

    def stop(self) -> None:
        for source in self.sources.values():
            source.stop()

    def after_rollback(self) -> None:
        for source in self.sources.values():
            source.after_rollback()

    def silence(self) -> str | None:
        """The first source's reason for being quiet, in the order the sources were given."""
        for source in self.sources.values():
            reason = silence_of(source)
            if reason is not None:
                return reason
        return None

    @property
    def outage_status(self) -> object | None:
        """The ongoing outage of a source that reports one (a metrics backend), or None."""
        for source in self.sources.values():
            status: object | None = getattr(source, "outage_status", None)
            if status is not None:
                return status
        return None

    @property
    def load(self) -> object | None:
        """The load generator's source: the one named ``load``, or a source's own ``load`` (the
        Prometheus source drains it); what the report walks to count unattributed rows."""
        if "load" in self.sources:
            return self.sources["load"]
        for source in self.sources.values():
            load: object | None = getattr(source, "load", None)
            if load is not None:
                return load
        return None
