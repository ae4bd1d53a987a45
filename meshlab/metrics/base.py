"""The metrics backend contract: say whether you are online; hand over what is new since last time.

Like Flagger's two-method provider. A backend is built for one experiment; its first
:meth:`MetricsProvider.fetch` marks the start (returns an empty :class:`Window`), every later call
returns the requests each arm served since the previous call, as :class:`meshlab.samples.Samples`
the statistics engine consumes directly, together with the statement of how they were approximated.
An empty window means *no data*, which is never a pass.

Unreachable backends raise :class:`~meshlab.errors.RetryableMetricsError`; the caller holds and
retries, and :class:`Outage` (pure, injected clock) says when the grace period is over and the
experiment must abort. :func:`fetch_or_hold` wires the two together.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from meshlab.errors import MetricsError, RetryableMetricsError
from meshlab.samples import Samples

Clock = Callable[[], float]


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


class Outage:
    """Hold-then-abort bookkeeping for an unreachable backend (pure; the clock is injected)."""

    def __init__(self, grace_period: float, clock: Clock = time.monotonic) -> None:
        if grace_period <= 0:
            raise ValueError("grace_period must be > 0 seconds")
        self.grace_period = grace_period
        self._clock = clock
        self._since: float | None = None

    @property
    def since(self) -> float | None:
        """Clock time of the first failure of the current outage, or None when healthy."""
        return self._since

    def succeeded(self) -> None:
        """The backend answered: any outage is over."""
        self._since = None

    def failed(self) -> float:
        """Record a failure; returns how long the outage has lasted (seconds)."""
        now = self._clock()
        if self._since is None:
            self._since = now
        return now - self._since

    def expired(self) -> bool:
        """True once an outage has lasted longer than the grace period."""
        return self._since is not None and self._clock() - self._since > self.grace_period


class MetricsUnavailableError(MetricsError):
    """The backend stayed unreachable for longer than the grace period: abort the experiment."""


def fetch_or_hold(provider: MetricsProvider, outage: Outage) -> Window | None:
    """One fetch with the hold/abort policy: a Window, or None to hold (retry on the next tick).

    Raises MetricsUnavailableError (chained to the last failure) once the backend has been
    unreachable for longer than ``outage.grace_period``; permanent errors propagate at once.
    """
    try:
        window = provider.fetch()
    except RetryableMetricsError as exc:
        lasted = outage.failed()
        if outage.expired():
            raise MetricsUnavailableError(
                f"metrics backend {provider.name} unreachable for {lasted:.0f}s, longer than the "
                f"grace period of {outage.grace_period:g}s; aborting ({exc})"
            ) from exc
        return None
    outage.succeeded()
    return window
