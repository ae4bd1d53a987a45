"""A live sample source for the controller whose rows come from Prometheus, not the load generator.

:class:`PrometheusLiveSamples` has the shape of ``meshlab.experiment.ports.LiveSamples``
(``poll``/``finished``/``stop``) so the controller runs unchanged with ``metrics.source:
prometheus``: the load generator still drives the traffic (its own rows are drained and only
counted), and every ``interval`` seconds one :func:`~meshlab.metrics.base.fetch_or_hold` turns what
Prometheus saw into pseudo-samples. While Prometheus is unreachable it returns nothing (hold) and
:attr:`PrometheusLiveSamples.outage_status` says since when (an :class:`~meshlab.metrics.base.OutageStatus`);
after the grace period it raises :class:`~meshlab.metrics.base.MetricsUnavailableError` (abort).
During an outage the next query is timed to run right when the grace period ends, so the abort
comes at most one query timeout after it, whatever ``interval`` is. After the load ends it keeps
polling for ``settle`` seconds, long enough for the last scrape.

Once the routes are back on the baseline the controller calls :meth:`after_rollback`: from then on
``poll`` never raises (the drain that times the last candidate request must not turn a confirmed
rollback into a failure) and, while Prometheus is down, does not even query it.

It is one :class:`~meshlab.live.LiveSamples` of the run's ordered merge: each window's
pseudo-samples lie in ``(start, end]``, so the watermark is the end of the last window fetched.
With ``drain_load=False`` the load's rows are left to the merge (Prometheus feeding latency and
errors, the collector's pairs the divergence), and ``load`` only says when the traffic ended.
:meth:`PrometheusLiveSamples.silence` names an arm whose series has stayed empty for
``quiet_after`` seconds of windows while the other arm's kept counting requests.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

from meshlab.clock import time_of_day
from meshlab.errors import MeshlabError
from meshlab.live import LiveSamples
from meshlab.metrics.base import (
    Clock,
    MetricsProvider,
    Outage,
    OutageStatus,
    fetch_or_hold,
    source_label,
)
from meshlab.samples import ALL_ARMS, ARMS, Sample, Samples

# Run the deciding query just past the end of the grace period (Outage.expired is strict).
_PAST_DEADLINE_S = 0.01


def samples_to_rows(samples: Samples) -> list[Sample]:
    """Column-wise samples back to rows (predictions as JSON text)."""
    return [
        Sample(
            float(samples.timestamp[i]),
            ALL_ARMS[int(samples.arm[i])],
            str(samples.request_id[i]),
            float(samples.latency_ms[i]),
            int(samples.status[i]),
            "" if samples.prediction[i] is None else json.dumps(samples.prediction[i]),
            bool(samples.mirrored[i]),
        )
        for i in range(len(samples))
    ]


class PrometheusLiveSamples:
    """Rows from a metrics provider every ``interval`` seconds while ``load`` drives the traffic."""

    def __init__(
        self,
        provider: MetricsProvider,
        load: LiveSamples,
        *,
        interval: float,
        outage: Outage,
        settle: float = 3.0,
        drain_load: bool = True,
        quiet_after: float = 10.0,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if interval <= 0 or settle < 0:
            raise ValueError("interval must be > 0 and settle >= 0")
        self.provider = provider
        self.load = load
        self.interval = interval
        self.outage = outage
        self.settle = settle
        self._clock = clock
        self._sleep = sleep
        self._next: float | None = None
        self._load_ended_at: float | None = None
        self._done = False
        self.load_rows = 0  # rows the load generator recorded (drained, not analysed)
        self.approximation = ""
        self.fetches = 0
        self.holds = 0
        self._quiet = False
        self.errors_after_rollback: list[str] = []  # failures poll() swallowed after rollback
        self.drain_load = drain_load
        self.quiet_after = quiet_after
        self._watermark = -math.inf
        self._first_end: float | None = None
        self._last_end = -math.inf
        self._arm_last: dict[str, float] = {}  # end of the last window with rows of the arm
        self._arm_missed: dict[str, int] = {}  # other arms' rows since then

    @property
    def outage_status(self) -> OutageStatus | None:
        """The ongoing outage of the metrics source ("Prometheus at ... unreachable since T")."""
        return self.outage.status(source_label(self.provider))

    def after_rollback(self) -> None:
        """The routes are on the baseline: from now on ``poll`` never raises, and while the source
        is down it is not queried (and ``finished`` turns True, so a drain loop ends at once)."""
        self._quiet = True
        if self.outage.since is not None:
            self._done = True

    def poll(self, timeout: float) -> list[Sample]:
        if not self._quiet:
            return self._poll(timeout)
        try:
            if self.outage.since is not None:  # down: nothing to learn, nothing to wait for
                self._done = True
                self._drain()
                return []
            return self._poll(timeout)
        except MeshlabError as exc:
            self.errors_after_rollback.append(str(exc))
            self._done = True
            return []

    def _drain(self) -> None:
        if self.drain_load:
            self.load_rows += len(self.load.poll(0.0))

    def _poll(self, timeout: float) -> list[Sample]:
        self._drain()
        now = self._clock()
        if self._load_ended_at is None and self.load.finished:
            self._load_ended_at = now
        if self._next is None:  # the first fetch marks the start
            self._next = now
        if now < self._next:
            self._sleep(max(0.0, min(timeout, self._next - now)))
            return []
        self._next = now + self.interval
        window = fetch_or_hold(self.provider, self.outage)
        if window is None:
            self.holds += 1
            deadline = self.outage.deadline
            if deadline is not None:  # query again right when the grace period ends
                self._next = min(self._next, max(now, deadline + _PAST_DEADLINE_S))
            return []
        self.fetches += 1
        if window.approximation:
            self.approximation = window.approximation
        if self._load_ended_at is not None and now >= self._load_ended_at + self.settle:
            self._done = True
        rows = samples_to_rows(window.samples)
        self._watermark = max(self._watermark, window.end)
        self._note_arms(window.end, rows)
        return rows

    def _note_arms(self, end: float, rows: list[Sample]) -> None:
        if self._first_end is None:
            self._first_end = end
        self._last_end = max(self._last_end, end)
        # the control is watched once its series has been seen (a control that never appears is
        # the controller's missing evidence, not a silence)
        counts = {arm: 0 for arm in ARMS + (("control",) if "control" in self._arm_last else ())}
        for row in rows:
            counts[row.arm] = counts.get(row.arm, 0) + 1
        for arm, n in counts.items():
            if n:
                self._arm_last[arm], self._arm_missed[arm] = end, 0
            else:
                self._arm_missed[arm] = self._arm_missed.get(arm, 0) + len(rows)

    def silence(self) -> str | None:
        """ "no candidate series in Prometheus at URL since T (N baseline requests since)" when an
        arm's series stayed empty for ``quiet_after`` seconds of windows while others counted."""
        if self._first_end is None:
            return None
        for arm in sorted(self._arm_missed):
            since = self._arm_last.get(arm, self._first_end)
            missed = self._arm_missed[arm]
            if missed and self._last_end - since >= self.quiet_after:
                return (
                    f"no {arm} series in {source_label(self.provider)} since "
                    f"{time_of_day(since)} ({missed} requests of the other arms since)"
                )
        return None

    @property
    def watermark(self) -> float:
        """The end of the last window fetched: the next one's pseudo-samples start after it."""
        return math.inf if self._done else self._watermark

    @property
    def finished(self) -> bool:
        return self._done

    def stop(self) -> None:
        self.load.stop()
