"""The one ordered merge of live sources (MergedSamples): property tests over any interleaving.

Sources here are scripted ``LiveSamples`` (rows and watermarks given by Hypothesis), since what is
under test is the merge's contract, not a backend: globally ordered output, nothing lost or
duplicated, every row released as soon as every source has passed it, and lateness counted
exactly (a row is late iff it arrives behind a row already handed on, and then it is handed on at
once, by itself, not re-sorted).
"""

from __future__ import annotations

import math
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from meshlab.live import MergedSamples, flush_rows, silence_of
from meshlab.samples import Sample

Step = tuple[list[float], float]  # rows delivered at one poll, the watermark promised after it


class Scripted:
    """One source: at each poll it is asked for, the next step of its script."""

    def __init__(self, name: str, steps: list[Step]) -> None:
        self.name = name
        self.steps = list(steps)
        self.mark = -math.inf
        self.sent = 0
        self.reason: str | None = None

    def poll(self, timeout: float) -> list[Sample]:
        if not self.steps or not self.active:
            return []
        stamps, mark = self.steps.pop(0)
        rows = [Sample(ts, "baseline", f"{self.name}-{self.sent + i}", 1.0, 200) for i, ts in
                enumerate(stamps)]  # fmt: skip
        self.sent += len(rows)
        self.mark = max(self.mark, mark)
        return rows

    active = True  # set per poll by the test: which sources move in this interleaving

    @property
    def watermark(self) -> float:
        return math.inf if self.finished else self.mark

    @property
    def finished(self) -> bool:
        return not self.steps

    def stop(self) -> None:
        pass

    def after_rollback(self) -> None:
        pass

    def silence(self) -> str | None:
        return self.reason


stamps = st.floats(0, 100, allow_nan=False)


@st.composite
def scripts(draw: st.DrawFn, honest: bool) -> list[list[Step]]:
    """Per source, steps whose watermarks rise; honest sources never send behind their promise."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        steps, mark = [], -math.inf
        for _ in range(draw(st.integers(1, 8))):
            floor = mark if honest and mark > -math.inf else 0.0
            rows = sorted(draw(st.lists(st.floats(floor, 100, allow_nan=False), max_size=5)))
            mark = max(mark, draw(stamps))
            steps.append((rows, mark))
        out.append(steps)
    return out


def run(merge: MergedSamples, sources: list[Scripted], moves: list[list[bool]]) -> list[
        tuple[list[Sample], float]]:  # fmt: skip
    """Poll until every source is done; each poll only the sources ``moves`` picks advance."""
    polls = []
    turn = 0
    while not merge.finished:
        pick = moves[turn % len(moves)] if moves else []
        for i, source in enumerate(sources):
            # every source advances at least every len(sources)+1 polls: the run ends
            source.active = (pick[i] if i < len(pick) else True) or turn % (len(sources) + 1) == 0
        before = max((r.timestamp for p, _ in polls for r in p), default=-math.inf)
        polls.append((merge.poll(0.0), before))
        turn += 1
        assert turn < 1000
    return polls


def check(merge: MergedSamples, sources: list[Scripted], polls: list[tuple[list[Sample], float]],
          ) -> None:  # fmt: skip
    sent = Counter(f"{s.name}-{i}" for s in sources for i in range(s.sent))
    got = Counter(r.request_id for rows, _ in polls for r in rows)
    assert got == sent  # nothing lost, nothing duplicated
    ordered: list[Sample] = []
    late = 0
    for rows, released in polls:
        # Late: behind a row handed on at an earlier poll. They come after the ordered part.
        flags = [r.timestamp < released for r in rows]
        assert flags == sorted(flags)  # ordered rows first, then the late ones as they came
        ordered += [r for r, is_late in zip(rows, flags, strict=True) if not is_late]
        late += sum(flags)
    assert [r.timestamp for r in ordered] == sorted(r.timestamp for r in ordered)
    assert merge.late == late == sum(merge.late_by_source.values())


@settings(max_examples=150, deadline=None)
@given(scripts(honest=False), st.lists(st.lists(st.booleans(), max_size=4), max_size=6))
def test_any_interleaving_is_ordered_complete_and_counts_late_rows(
    script: list[list[Step]], moves: list[list[bool]]
) -> None:
    sources = [Scripted(f"s{i}", steps) for i, steps in enumerate(script)]
    merge = MergedSamples({s.name: s for s in sources})
    check(merge, sources, run(merge, sources, moves))


@settings(max_examples=150, deadline=None)
@given(scripts(honest=True), st.lists(st.lists(st.booleans(), max_size=4), max_size=6))
def test_sources_that_keep_their_promise_are_never_late(
    script: list[list[Step]], moves: list[list[bool]]
) -> None:
    sources = [Scripted(f"s{i}", steps) for i, steps in enumerate(script)]
    merge = MergedSamples({s.name: s for s in sources})
    polls = run(merge, sources, moves)
    check(merge, sources, polls)
    assert merge.late == 0
    assert merge.pending == 0


def test_late_rows_are_counted_per_source_exactly() -> None:
    a = Scripted("a", [([1.0, 5.0], 6.0), ([2.0], 7.0), ([], 8.0)])
    b = Scripted("b", [([3.0], 10.0), ([], 11.0), ([4.0, 9.0], 12.0)])
    merge = MergedSamples({"a": a, "b": b})
    assert [r.timestamp for r in merge.poll(0.0)] == [1.0, 3.0, 5.0]  # all below min(6, 10)
    assert [r.timestamp for r in merge.poll(0.0)] == [2.0]  # behind 5.0, already out: late
    # a is done after its last step and b promises 12: 9.0 goes in order, then 4.0 late
    assert [r.timestamp for r in merge.poll(0.0)] == [9.0, 4.0]
    assert merge.late_by_source == {"a": 1, "b": 1} and merge.late == 2
    assert merge.finished and merge.watermark == math.inf


def test_silence_comes_from_the_first_source_that_has_one() -> None:
    a, b = Scripted("a", [([], 1.0)]), Scripted("b", [([], 1.0)])
    merge = MergedSamples({"a": a, "b": b})
    assert silence_of(merge) is None
    b.reason = "no shadow predictions since 15:02:11Z (collector: 3 primaries unpaired)"
    assert silence_of(merge) == b.reason
    assert silence_of(object()) is None  # a source without silence() has nothing to say


def test_the_load_is_found_by_name_or_through_the_source_that_drains_it() -> None:
    load = Scripted("load", [([], 1.0)])
    assert MergedSamples({"load": load, "tap": Scripted("tap", [])}).load is load

    class Draining(Scripted):
        def __init__(self) -> None:
            super().__init__("prometheus", [])
            self.load = load

    assert MergedSamples({"prometheus": Draining()}).load is load
    assert MergedSamples({"tap": Scripted("tap", [])}).load is None


def test_flush_hands_on_every_row_still_held_at_the_end_of_a_run() -> None:
    load = Scripted("load", [([1.0, 2.0], 5.0), ([6.0], 7.0), ([], 8.0)])
    tap = Scripted("tap", [([1.5], 1.0), ([], 1.0)])  # its lag holds everything after 1.0
    merge = MergedSamples({"load": load, "tap": tap})
    assert merge.poll(0.0) == []
    rows = flush_rows(merge)  # the load's next step and everything held, whatever the marks
    assert [r.timestamp for r in rows] == [1.0, 1.5, 2.0, 6.0]
    assert merge.pending == 0 and merge.late == 0
    assert flush_rows(object()) == []  # a source that holds nothing back
