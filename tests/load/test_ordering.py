"""OrderedMerge: samples from several sources released in start-time order by watermark."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from meshlab.load.ordering import OrderedMerge
from meshlab.samples import Sample


def s(ts: float, rid: str, mirrored: bool = False) -> Sample:
    return Sample(ts, "candidate" if mirrored else "baseline", rid, 1.0, 200, "", mirrored)


def test_holds_samples_until_every_source_has_passed_them() -> None:
    merge = OrderedMerge(["load", "mesh"])
    merge.add("load", [s(2.0, "b"), s(1.0, "a")], watermark=3.0)
    assert merge.release().samples == ()  # the mesh has promised nothing yet
    merge.add("mesh", [s(1.5, "a", mirrored=True)], watermark=1.8)
    batch = merge.release()
    assert [x.request_id for x in batch.samples] == ["a", "a"]
    assert batch.watermark == 1.8
    merge.finish("mesh")
    merge.finish("load")
    assert [x.timestamp for x in merge.release().samples] == [2.0]
    assert merge.watermark == math.inf


def test_a_sample_behind_the_released_stream_is_late_not_misordered() -> None:
    merge = OrderedMerge(["load"])
    merge.add("load", [s(5.0, "x")], watermark=6.0)
    assert len(merge.release().samples) == 1
    merge.add("load", [s(4.0, "slow"), s(5.5, "ok")], watermark=7.0)
    batch = merge.release()
    assert [x.request_id for x in batch.samples] == ["ok"]
    assert [x.request_id for x in batch.late] == ["slow"]
    assert merge.late == 1 and merge.late_by_source == {"load": 1}


def test_watermarks_never_go_back() -> None:
    merge = OrderedMerge(["load"])
    merge.add("load", [], watermark=10.0)
    merge.add("load", [], watermark=5.0)
    assert merge.watermark == 10.0


@given(
    st.lists(st.tuples(st.floats(0, 100), st.booleans(), st.floats(0, 5)), max_size=60),
)
def test_released_stream_is_ordered_and_complete(events: list[tuple[float, bool, float]]) -> None:
    # Each source delivers samples up to 5 s after they start and promises watermark = now - 5.
    merge = OrderedMerge(["load", "mesh"])
    out: list[Sample] = []
    arrivals = sorted(
        (ts + delay, ts, mirrored, i) for i, (ts, mirrored, delay) in enumerate(events)
    )
    for now, ts, mirrored, i in arrivals:
        merge.add("mesh" if mirrored else "load", [s(ts, str(i), mirrored)])
        for source in ("load", "mesh"):
            merge.add(source, [], watermark=now - 5.0)
        batch = merge.release()
        assert batch.late == ()
        out.extend(batch.samples)
    merge.finish("load")
    merge.finish("mesh")
    out.extend(merge.release().samples)
    assert [x.timestamp for x in out] == sorted(x.timestamp for x in out)
    assert sorted(int(x.request_id) for x in out) == list(range(len(events)))
