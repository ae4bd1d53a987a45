"""Hold while the backend is unreachable, abort after the grace period (fake clock, no waiting)."""

from __future__ import annotations

import pytest

from meshlab.errors import PermanentMetricsError, RetryableMetricsError
from meshlab.metrics import MetricsUnavailableError, Outage, Window, empty_samples, fetch_or_hold


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedProvider:
    """Raises or returns what the script says, one step per fetch."""

    name = "scripted"

    def __init__(self, script: list[Exception | None]) -> None:
        self.script = script

    def online(self) -> bool:
        return True

    def fetch(self) -> Window:
        step = self.script.pop(0)
        if step is not None:
            raise step
        return Window(0.0, 1.0, empty_samples())

    def close(self) -> None:
        pass


def test_outage_holds_within_the_grace_period_and_aborts_after() -> None:
    clock = FakeClock()
    down = RetryableMetricsError("unreachable")
    provider = ScriptedProvider([down, down, down])
    outage = Outage(60, clock)
    assert fetch_or_hold(provider, outage) is None
    clock.now += 60
    assert fetch_or_hold(provider, outage) is None  # exactly the grace period: still holding
    clock.now += 0.5
    with pytest.raises(MetricsUnavailableError, match=r"unreachable for 60s.*grace period of 60s"):
        fetch_or_hold(provider, outage)


def test_a_successful_fetch_ends_the_outage() -> None:
    clock = FakeClock()
    down = RetryableMetricsError("unreachable")
    provider = ScriptedProvider([down, None, down, None])
    outage = Outage(10, clock)
    assert fetch_or_hold(provider, outage) is None
    clock.now += 9
    assert fetch_or_hold(provider, outage) is not None
    assert outage.since is None
    clock.now += 9
    assert fetch_or_hold(provider, outage) is None  # a new outage starts from now
    assert outage.since == clock.now
    clock.now += 9
    assert fetch_or_hold(provider, outage) is not None


def test_permanent_errors_are_not_held() -> None:
    provider = ScriptedProvider([PermanentMetricsError("bad query")])
    with pytest.raises(PermanentMetricsError):
        fetch_or_hold(provider, Outage(60, FakeClock()))


def test_grace_period_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Outage(0)
