"""Load rows plus the collector's shadow rows, as one live source (real collector, fake load)."""

from __future__ import annotations

import httpx

from meshlab.collector import Collector, CollectorLiveSamples, Joiner
from meshlab.samples import Sample


class FakeLoad:
    def __init__(self) -> None:
        self.finished = False
        self.rows = [Sample(5.0, "baseline", "r-1", 8.0, 200, "0.1")]

    def poll(self, timeout: float) -> list[Sample]:
        rows, self.rows = self.rows, []
        return rows

    def stop(self) -> None:
        self.finished = True


def test_primary_from_load_and_shadow_from_collector_share_the_request_id() -> None:
    now = [0.0]
    load = FakeLoad()
    with Collector(Joiner(release="mirrored")) as collector:
        live = CollectorLiveSamples(collector, load, settle=5, clock=lambda: now[0])
        answer = httpx.post(
            f"{collector.url}/events/candidate",
            timeout=5,
            json={"requestId": "r-1", "prediction": 0.7, "latencyMs": 9.0, "time": 4.0},
        )
        assert answer.status_code == 200
        rows = live.poll(0.1)
    assert [(r.arm, r.request_id, r.mirrored, r.prediction) for r in rows] == [
        ("candidate", "r-1", True, "0.7"),
        ("baseline", "r-1", False, "0.1"),
    ]
    live.stop()
    assert not live.finished  # late logger deliveries get `settle` seconds
    now[0] = 5.0
    assert live.finished
