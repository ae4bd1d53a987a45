"""Load rows plus the collector's shadow rows, as one live source (real collector, fake load).

The load is a scripted stand-in (rows and a watermark) since only the merge and the collector's
side are under test here; the collector is the real listener on loopback.
"""

from __future__ import annotations

import math

import httpx

from meshlab.collector import Collector, CollectorLiveSamples, Joiner
from meshlab.samples import Sample


class FakeLoad:
    def __init__(self, rows: list[Sample], watermark: float) -> None:
        self.finished = False
        self.rows = rows
        self.mark = watermark

    @property
    def watermark(self) -> float:
        return math.inf if self.finished else self.mark

    def poll(self, timeout: float) -> list[Sample]:
        rows, self.rows = self.rows, []
        return rows

    def stop(self) -> None:
        self.finished = True

    def after_rollback(self) -> None:
        pass


def post(collector: Collector, rid: str, at: float) -> None:
    record = {"requestId": rid, "prediction": 0.7, "latencyMs": 9.0, "time": at}
    answer = httpx.post(f"{collector.url}/events/candidate", timeout=5, json=record)
    assert answer.status_code == 200


def test_primary_from_load_and_shadow_from_collector_share_the_request_id() -> None:
    now = [0.0]
    load = FakeLoad([Sample(5.0, "baseline", "r-1", 8.0, 200, "0.1")], watermark=10.0)
    with Collector(Joiner(release="mirrored")) as collector:
        live = CollectorLiveSamples(
            collector, load, settle=5, clock=lambda: now[0], wall=lambda: 100.0
        )
        post(collector, "r-1", 4.0)
        rows = live.poll(0.1)
    assert [(r.arm, r.request_id, r.mirrored, r.prediction) for r in rows] == [
        ("candidate", "r-1", True, "0.7"),
        ("baseline", "r-1", False, "0.1"),
    ]
    assert live.unpaired == (0, 0) and live.late == 0
    live.stop()
    assert not live.finished  # late logger deliveries get `settle` seconds
    now[0] = 5.0
    assert live.finished


def test_rows_wait_for_every_watermark_and_a_late_shadow_row_is_counted_and_fed() -> None:
    wall = [20.0]
    load = FakeLoad([Sample(15.0, "baseline", "r-1", 8.0, 200, "0.1")], watermark=30.0)
    with Collector(Joiner(release="mirrored")) as collector:
        live = CollectorLiveSamples(collector, load, lag=2.0, wall=lambda: wall[0])
        post(collector, "r-1", 15.5)
        post(collector, "r-2", 19.0)
        rows = live.poll(0.05)  # the collector promises 18: 19.0 waits
        assert [(r.request_id, r.timestamp) for r in rows] == [("r-1", 15.0), ("r-1", 15.5)]
        assert live.pending == 1 and live.watermark == 18.0
        wall[0] = 25.0
        assert [r.request_id for r in live.poll(0.05)] == ["r-2"]
        post(collector, "r-3", 16.0)  # a logger delivery slower than the lag
        late = live.poll(0.05)
    assert [r.request_id for r in late] == ["r-3"]  # fed on arrival, not re-sorted
    assert live.late == 1 and live.late_by_source == {"load": 0, "collector": 1}


def test_silence_names_a_quiet_shadow_while_primaries_keep_coming() -> None:
    now = [0.0]
    load = FakeLoad([], watermark=0.0)
    with Collector(Joiner(release="mirrored")) as collector:
        live = CollectorLiveSamples(
            collector, load, quiet_after=10.0, clock=lambda: now[0], wall=lambda: 1_000_000.0
        )
        post(collector, "r-0", 1.0)
        load.rows = [Sample(1.0, "baseline", "r-0", 8.0, 200, "0.1")]
        live.poll(0.05)
        assert live.silence() is None  # a shadow row just came
        load.rows = [Sample(2.0 + i, "baseline", f"r-{i + 1}", 8.0, 200, "0.1") for i in range(4)]
        now[0] = 5.0
        live.poll(0.05)
        assert live.silence() is None  # quiet for 5 s only
        now[0] = 12.0
        reason = live.silence()
    assert reason == (
        "no shadow predictions since 13:46:40Z (collector: 4 primaries unpaired, 4 since the "
        "last shadow row)"
    )


def test_no_silence_when_the_primaries_stop_too() -> None:
    now = [0.0]
    load = FakeLoad([], watermark=0.0)
    with Collector(Joiner(release="mirrored")) as collector:
        live = CollectorLiveSamples(collector, load, clock=lambda: now[0])
        live.poll(0.01)
        now[0] = 60.0
        assert live.silence() is None  # nothing at all came: the load's business, not the logger's
