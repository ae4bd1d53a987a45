"""The collector's join with a control arm (issue 13): three rows per shadow request, fake clock.

In a shadow test with ``spec.control`` every live request is mirrored to the candidate and to the
control, whose KServe loggers post to ``/events/candidate`` and ``/events/control``; a request is
complete once the primary and both copies arrived, and both copies are released as mirrored rows.
Without a control, a control event is counted apart and never breaks a baseline/candidate pair.
"""

from __future__ import annotations

from meshlab.collector import Joiner, parse

from .test_joining import FakeClock, full


def test_with_a_control_a_request_is_complete_with_the_primary_and_both_copies() -> None:
    joiner = Joiner(control=True, clock=FakeClock())
    full(joiner, "baseline", "a", 1)
    full(joiner, "candidate", "a", 1)
    assert joiner.take() == []  # the control's copy is still missing
    full(joiner, "control", "a", 0)
    rows = joiner.take()
    assert sorted((r.arm, r.prediction, r.mirrored) for r in rows) == [
        ("baseline", "1", False),
        ("candidate", "1", True),
        ("control", "0", True),
    ]
    assert joiner.stats.pairs == 1
    assert joiner.stats.by_arm == {"baseline": 1, "candidate": 1, "control": 1}


def test_mirrored_release_passes_the_controls_copies_on_as_mirrored() -> None:
    joiner = Joiner(control=True, release="mirrored", clock=FakeClock())
    full(joiner, "control", "a", 0.5)
    full(joiner, "baseline", "a", 0.1)  # the load generator has the primary
    rows = joiner.take()
    assert [(r.arm, r.mirrored) for r in rows] == [("control", True)]


def test_without_a_control_a_control_event_is_set_aside_and_pairs_still_form() -> None:
    joiner = Joiner(clock=FakeClock())
    full(joiner, "baseline", "a", 1)
    full(joiner, "control", "a", 1)
    full(joiner, "candidate", "a", 1)
    rows = joiner.take()
    assert sorted(r.arm for r in rows) == ["baseline", "candidate"]
    assert joiner.stats.other_arm == 1


def test_a_plain_record_may_name_the_control_arm() -> None:
    body = b'{"requestId": "r1", "prediction": 1, "arm": "control"}'
    event = parse({"content-type": "application/json"}, body, received_at=1.0)
    assert event.arm == "control"
    on_path = parse(
        {"content-type": "application/json"},
        b'{"requestId": "r2"}',
        path_arm="control",
        received_at=1.0,
    )
    assert on_path.arm == "control"
