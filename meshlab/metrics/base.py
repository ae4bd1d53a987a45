"""The metrics backend contract: say whether you are online; hand over what is new since last time.

Like Flagger's two-method provider. A backend is built for one experiment; its first
:meth:`MetricsProvider.fetch` marks the start (returns an empty :class:`Window`), every later call
returns the requests each arm served since the previous call, as :class:`meshlab.samples.Samples`
the statistics engine consumes directly, together with the statement of how they were approximated.
An empty window means *no data*, which is never a pass.

Outages are classified once, by the backend: a transient failure (connection refused, a timeout,
a body cut off mid-way, HTTP 5xx/429) raises :class:`~meshlab.errors.RetryableMetricsError`; the
caller holds and retries, and :class:`Outage` (pure, injected clock) says when the grace period is
over and the experiment must abort. The grace clock starts when the first failed query *began*
(not when it gave up), so a frozen backend cannot stretch it by its timeout. A failure that waiting
cannot heal (HTTP 400 bad query, 401/403 token) raises
:class:`~meshlab.errors.PermanentMetricsError` at once. :func:`fetch_or_hold` wires the two
together; :class:`OutageStatus` is what a caller shows ("Prometheus unreachable since T").
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

import numpy as np

from meshlab.clock import Clock as Clock  # defined once there; re-exported for the backends
from meshlab.errors import MetricsError, RetryableMetricsError
from meshlab.samples import Samples


def empty_samples() -> Samples:
    """A ``Samples`` with no rows."""
    return Samples(
        np.empty(0, dtype=np.float64),
        np.empty(0, dtype=np.int8),
        np.empty(0, dtype=np.str_),
        np.empty(0, dtype=np.float64),
        np.empty(0, dtype=np.int32),
        np.empty(0, dtype=object),
        np.empty(0, dtype=np.bool_),
    )


@dataclass(frozen=True)
class ArmTotals:
    """Exact counts one arm served in a window (before any approximation)."""

    requests: int
    errors: int
    latency_observations: int


@dataclass(frozen=True)
class Window:
    """What a metrics backend saw in ``(start, end]`` (seconds since the epoch)."""

    start: float
    end: float
    samples: Samples
    totals: Mapping[str, ArmTotals] = field(default_factory=dict)
    approximation: str = ""  # how ``samples`` were derived; "" when they are raw observations
    bounds: tuple[float, ...] = ()  # latency bucket bounds (ms) the pseudo-samples sit on, if any

    @property
    def is_empty(self) -> bool:
        """True when no arm served a request in the window: no data, never a pass."""
        return len(self.samples) == 0


@runtime_checkable
class MetricsProvider(Protocol):
    """A source of per-arm observations over time."""

    name: str

    def online(self) -> bool:
        """Whether the backend answers right now (never raises)."""
        ...

    def fetch(self) -> Window:
        """Observations since the previous call (the first call only marks the start).

        Raises RetryableMetricsError when the backend is unreachable, PermanentMetricsError when
        the query can never succeed.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True)
class OutageStatus:
    """An ongoing outage of a metrics source, as the controller reports it."""

    source: str  # "Prometheus at http://prometheus:9090"
    since: float  # epoch seconds when the first failed query of this outage began
    failures: int  # failed fetches so far
    last_error: str  # one line, secrets redacted
    grace_period: float

    def describe(self) -> str:
        """``Prometheus at http://... unreachable since 2026-11-30T12:03:04Z (3 failed looks; ...)``."""
        at = datetime.fromtimestamp(self.since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        looks = "look" if self.failures == 1 else "looks"
        return (
            f"{self.source} unreachable since {at} ({self.failures} failed {looks}; "
            f"last: {self.last_error})"
        )


class Outage:
    """Hold-then-abort bookkeeping for an unreachable backend (pure; the clocks are injected).

    ``clock`` measures the grace period (monotonic); ``wall`` only dates the outage for people.
    """

    def __init__(
        self, grace_period: float, clock: Clock = time.monotonic, wall: Clock = time.time
    ) -> None:
        if grace_period <= 0:
            raise ValueError("grace_period must be > 0 seconds")
        self.grace_period = grace_period
        self._clock = clock
        self._wall = wall
        self._since: float | None = None
        self._since_epoch = 0.0
        self.failures = 0
        self.last_error = ""

    def now(self) -> float:
        """The grace clock's time (pass it to :meth:`failed` as the start of an attempt)."""
        return self._clock()

    @property
    def since(self) -> float | None:
        """Clock time of the first failure of the current outage, or None when healthy."""
        return self._since

    @property
    def deadline(self) -> float | None:
        """Clock time after which the current outage is over the grace period (None: healthy)."""
        return None if self._since is None else self._since + self.grace_period

    def succeeded(self) -> None:
        """The backend answered: any outage is over."""
        self._since = None
        self.failures = 0
        self.last_error = ""

    def failed(self, began: float | None = None, error: str = "") -> float:
        """Record a failed attempt that began at ``began`` (default: now); how long it has lasted."""
        now = self._clock()
        if self._since is None:
            self._since = now if began is None else min(began, now)
            self._since_epoch = self._wall() - (now - self._since)
        self.failures += 1
        self.last_error = error or self.last_error
        return now - self._since

    def expired(self) -> bool:
        """True once an outage has lasted longer than the grace period."""
        return self._since is not None and self._clock() - self._since > self.grace_period

    def status(self, source: str) -> OutageStatus | None:
        """The ongoing outage of ``source``, or None while it answers."""
        if self._since is None:
            return None
        return OutageStatus(
            source, self._since_epoch, self.failures, self.last_error, self.grace_period
        )


class MetricsUnavailableError(MetricsError):
    """The backend stayed unreachable for longer than the grace period: abort the experiment."""

    def __init__(self, message: str, status: OutageStatus | None = None) -> None:
        super().__init__(message)
        self.status = status


def source_label(provider: MetricsProvider) -> str:
    """How messages name a provider: its ``label`` if it has one ("Prometheus at URL"), else name."""
    return str(getattr(provider, "label", provider.name))


def fetch_or_hold(provider: MetricsProvider, outage: Outage) -> Window | None:
    """One fetch with the hold/abort policy: a Window, or None to hold (retry on the next tick).

    Raises MetricsUnavailableError (chained to the last failure) once the backend has been
    unreachable for longer than ``outage.grace_period``; permanent errors propagate at once.
    """
    began = outage.now()
    try:
        window = provider.fetch()
    except RetryableMetricsError as exc:
        lasted = outage.failed(began, str(exc))
        if outage.expired():
            status = outage.status(source_label(provider))
            assert status is not None
            raise MetricsUnavailableError(
                f"{status.describe()}; unreachable for {lasted:.0f}s, longer than the grace period of "
                f"{outage.grace_period:g}s; aborting",
                status,
            ) from exc
        return None
    outage.succeeded()
    return window
