"""The evidence of a session: Prometheus' cumulative counters read at the session's look times.

:class:`Evidence` wraps :class:`meshlab.metrics.PrometheusMetrics` with a scripted clock, so every
read is an instant query *at a recorded time*: first at the session's start (which only marks the
counters' starting values), then at each look. Each read turns the per-series increases since the
previous read (a decrease = a restarted process) into bucket pseudo-samples, which feed a
:class:`meshlab.metrics.BracketedComparison` (bucketed latencies are bracketed, so bucket placement
cannot promote a slower candidate).

A session warm in memory costs one read per look. A cold one (after a restart) is replayed: the
same reads at the same recorded times return the same counters, so the same comparison results.
Reading at every recorded look, not only at start and now, keeps the increases of pods that
restarted or went away between looks.

Each read is evaluated ``record.read_lag`` seconds before its recorded time. A scrape's samples
carry the scrape's *start* time but are queryable only once the scrape has finished, so a query at
"now" can miss a sample stamped just before now that a later query at the same time sees: the
live answer and its replay would then count different requests (CI saw 53 and 79 baseline
requests for one look). A sample stamped ``t`` is appended by ``t + scrape_timeout`` at the latest,
so with a lag of at least the scrape timeout (Prometheus' default, 10 s, is ``serve``'s default
``--prometheus-read-lag``) every read is final when made. The lag is stored with the session, so
a restart with another setting still replays the reads that were made.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshlab.metrics import DEFAULT_BUCKETS_MS, BracketedComparison, PrometheusMetrics, Window
from meshlab.serve.config import PrometheusSettings
from meshlab.serve.sessions import SessionRecord
from meshlab.serve.targets import serve_template_set
from meshlab.stats import Assessment


class ScriptedClock:
    """The time the next Prometheus read is evaluated at."""

    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@dataclass
class Counts:
    """Cumulative requests and errors per arm since the session started."""

    requests: dict[str, int] = field(default_factory=lambda: {"baseline": 0, "candidate": 0})
    errors: dict[str, int] = field(default_factory=lambda: {"baseline": 0, "candidate": 0})

    def add(self, window: Window) -> None:
        for arm, totals in window.totals.items():
            self.requests[arm] += totals.requests
            self.errors[arm] += totals.errors


class Evidence:
    """One session's reads and comparison, rebuilt from its record when cold."""

    def __init__(self, record: SessionRecord, prometheus: PrometheusSettings) -> None:
        self.started_at = record.started_at
        self.lag = record.read_lag
        self._clock = ScriptedClock(record.started_at - self.lag)
        self.provider = PrometheusMetrics(
            prometheus.url,
            serve_template_set(record.target.templates),
            record.target.arms(),
            token_env=prometheus.token_env,
            token_file=prometheus.token_file,
            verify_tls=prometheus.verify_tls,
            ca_file=prometheus.ca_file,
            timeout=prometheus.timeout,
            clock=self._clock,
        )
        # Argo Rollouts and Flagger run two arms (stable, canary) and no control: the canary is
        # compared with the stable, and the answer says so ("candidate vs baseline").
        self.comparison = BracketedComparison(
            record.analysis,
            "canary",
            bounds=lambda: self.provider.bounds or DEFAULT_BUCKETS_MS,
            control=False,
        )
        self.counts = Counts()
        self.applied = -1  # reads done after the start mark; -1 = not even the start

    def close(self) -> None:
        self.provider.close()

    def _read(self, at: float) -> None:
        self._clock.at = at - self.lag
        window = self.provider.fetch()
        if self.applied >= 0:
            self.counts.add(window)
            self.comparison.update(window.samples)
        self.applied += 1

    def catch_up(self, record: SessionRecord) -> None:
        """Replay the reads of ``record`` this object has not done yet (all of them when cold),
        assessing each look as the live session did: a metric that passed at one stays passed
        (:mod:`meshlab.stats.results`), so a restart must not forget it."""
        if self.applied < 0:
            self._read(record.started_at)
        for at in record.looks[self.applied :]:
            self._read(at)
            self.comparison.assess()

    def look(self, at: float) -> Assessment:
        """Read the counters at ``at`` and assess everything since the session started."""
        self._read(at)
        return self.comparison.assess()
