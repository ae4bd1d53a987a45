"""The controller-facing live source over Prometheus: interval, hold, abort, settle (fake time)."""

from __future__ import annotations

import numpy as np
import pytest

from meshlab.errors import RetryableMetricsError
from meshlab.metrics import (
    MetricsUnavailableError,
    Outage,
    PrometheusLiveSamples,
    Window,
    empty_samples,
    samples_to_rows,
)
from meshlab.samples import Sample, Samples


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeLoad:
    def __init__(self) -> None:
        self.finished = False
        self.stopped = False

    def poll(self, timeout: float) -> list[Sample]:
        return [Sample(1.0, "baseline", "load-1", 3.0, 200)]

    def stop(self) -> None:
        self.stopped = True


ROWS = [
    Sample(10.0, "baseline", "prom-0", 25.0, 200),
    Sample(10.5, "candidate", "prom-1", 50.0, 503, mirrored=True),
]


class Provider:
    name = "scripted"

    def __init__(self, script: list[Window | Exception]) -> None:
        self.script = script
        self.calls = 0

    def online(self) -> bool:
        return True

    def fetch(self) -> Window:
        self.calls += 1
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def close(self) -> None:
        pass


def window(rows: list[Sample]) -> Window:
    samples = Samples.from_rows(rows) if rows else empty_samples()
    return Window(0.0, 1.0, samples, approximation="buckets" if rows else "")


def test_rows_come_from_prometheus_every_interval_and_load_rows_are_only_counted() -> None:
    t, load = FakeTime(), FakeLoad()
    provider = Provider([window([]), window(ROWS), window([]), window([])])
    live = PrometheusLiveSamples(
        provider,
        load,
        interval=5,
        outage=Outage(30, t.clock),
        settle=3,
        clock=t.clock,
        sleep=t.sleep,
    )
    assert live.poll(1.0) == []  # first fetch marks the start
    assert live.poll(1.0) == [] and t.now == 1.0  # waits, at most the timeout
    t.now = 5.0
    assert live.poll(1.0) == ROWS
    assert live.approximation == "buckets" and live.load_rows == 3
    load.finished = True
    assert not live.finished
    t.now = 10.0
    assert live.poll(1.0) == []
    assert not live.finished  # the load's end was seen now; the last scrape may be pending
    t.now = 15.0
    assert live.poll(1.0) == []
    assert live.finished  # a fetch at least `settle` seconds after the load ended
    live.stop()
    assert load.stopped and provider.calls == 4


def test_holds_while_unreachable_then_aborts_after_grace() -> None:
    t, load = FakeTime(), FakeLoad()
    down = RetryableMetricsError("unreachable")
    provider = Provider([window([]), down, down, window(ROWS), down, down])
    live = PrometheusLiveSamples(
        provider, load, interval=5, outage=Outage(12, t.clock), clock=t.clock, sleep=t.sleep
    )
    live.poll(0)
    for now in (5.0, 10.0):
        t.now = now
        assert live.poll(0) == []
    t.now = 15.0
    assert live.poll(0) == ROWS  # recovered within the grace period
    t.now = 20.0
    assert live.poll(0) == []
    t.now = 33.0
    with pytest.raises(MetricsUnavailableError, match="grace period of 12s"):
        live.poll(0)
    assert live.holds == 3


def test_samples_to_rows_round_trips() -> None:
    rows = [*ROWS, Sample(11.0, "candidate", "x", 1.0, 200, '{"p": [1, 2]}', True)]
    back = samples_to_rows(Samples.from_rows(rows))
    assert [(r.arm, r.request_id, r.status, r.mirrored) for r in back] == [
        (r.arm, r.request_id, r.status, r.mirrored) for r in rows
    ]
    assert back[2].prediction == '{"p": [1, 2]}' and back[0].prediction == ""
    assert np.isclose(back[1].latency_ms, 50.0)


def arm_window(start: float, end: float, baseline: int, candidate: int) -> Window:
    rows = [Sample(start + 0.1 * i, "baseline", f"prom-b{start}-{i}", 5.0, 200) for i in
            range(baseline)]  # fmt: skip
    rows += [Sample(start + 0.1 * i, "candidate", f"prom-c{start}-{i}", 5.0, 200, "", True) for i
             in range(candidate)]  # fmt: skip
    samples = (
        Samples.from_rows(sorted(rows, key=lambda r: r.timestamp)) if rows else empty_samples()
    )
    return Window(start, end, samples)


def test_the_watermark_is_the_end_of_the_last_window_fetched() -> None:
    t, load = FakeTime(), FakeLoad()
    provider = Provider([arm_window(0, 100, 0, 0), arm_window(100, 105, 2, 2)])
    live = PrometheusLiveSamples(
        provider, load, interval=5, outage=Outage(30, t.clock), clock=t.clock, sleep=t.sleep
    )
    assert live.watermark == -np.inf  # nothing promised before the first fetch
    live.poll(0)
    assert live.watermark == 100
    t.now = 5.0
    rows = live.poll(0)
    assert len(rows) == 4 and all(100 <= r.timestamp < 105 for r in rows)
    assert live.watermark == 105  # the next window's rows start after it


def test_drain_load_false_leaves_the_load_rows_to_the_merge() -> None:
    t, load = FakeTime(), FakeLoad()
    provider = Provider([arm_window(0, 100, 0, 0)])
    live = PrometheusLiveSamples(
        provider, load, interval=5, outage=Outage(30, t.clock), clock=t.clock, sleep=t.sleep,
        drain_load=False,
    )  # fmt: skip
    live.poll(0)
    assert live.load_rows == 0


def test_silence_names_an_arm_whose_series_stayed_empty() -> None:
    t, load = FakeTime(), FakeLoad()
    provider = Provider(
        [
            arm_window(0, 1000, 0, 0),
            arm_window(1000, 1005, 3, 3),
            arm_window(1005, 1010, 4, 0),
            arm_window(1010, 1015, 5, 0),
            arm_window(1015, 1020, 2, 2),
        ]
    )
    live = PrometheusLiveSamples(
        provider, load, interval=5, outage=Outage(30, t.clock), clock=t.clock, sleep=t.sleep,
        quiet_after=10,
    )  # fmt: skip
    for now in (0.0, 5.0, 10.0):
        t.now = now
        live.poll(0)
        assert live.silence() is None  # the candidate is quiet for one window only
    t.now = 15.0
    live.poll(0)
    assert live.silence() == (
        "no candidate series in scripted since 00:16:45Z (9 requests of the other arms since)"
    )
    t.now = 20.0
    live.poll(0)
    assert live.silence() is None  # it came back


def test_a_quiet_start_counts_from_the_first_window() -> None:
    t, load = FakeTime(), FakeLoad()
    provider = Provider([arm_window(0, 1000, 0, 0)] + [arm_window(1000 + 5 * i, 1005 + 5 * i, 2, 0)
                                                        for i in range(3)])  # fmt: skip
    live = PrometheusLiveSamples(
        provider, load, interval=5, outage=Outage(30, t.clock), clock=t.clock, sleep=t.sleep,
        quiet_after=10,
    )  # fmt: skip
    for i in range(4):
        t.now = 5.0 * i
        live.poll(0)
    assert live.silence() == (
        "no candidate series in scripted since 00:16:40Z (6 requests of the other arms since)"
    )
