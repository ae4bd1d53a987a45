"""Shadow error rates judged on request pairs: incomplete pairs never buy a promote.

``Comparison`` in shadow mode pairs the primary (or, with a control, the control's copy) and the
candidate's copy of the same request and judges errors by betting on each pair's difference
(:mod:`meshlab.stats.bets`). These tests pin how incomplete pairs count.
"""

from __future__ import annotations

import numpy as np

from meshlab.spec.analysis import Metric
from meshlab.stats import Comparison
from meshlab.stats.pairing import ErrorPairs
from meshlab.stats.results import MetricResult

from .helpers import ERRORS, analysis, make_samples


def shadow_rows(
    n: int,
    rng: np.random.Generator,
    cand_err: float = 0.0,
    reference_arm: int = 0,
    drop_copy: float = 0.0,
    drop_primary: float = 0.0,
    copy_failures_only: bool = False,
) -> tuple[list[int], list[int], list[bool], list[str]]:
    """(arm, status, mirrored, request_id) rows: 1% bad requests fail on both copies."""
    arm: list[int] = []
    status: list[int] = []
    mirrored: list[bool] = []
    ids: list[str] = []
    ref_mirrored = reference_arm == 2
    for i in range(n):
        bad = rng.random() < 0.01
        cand_fails = bad or rng.random() < cand_err
        keep_copy = rng.random() >= drop_copy
        keep_primary = rng.random() >= drop_primary or (copy_failures_only and not cand_fails)
        if keep_primary:
            arm.append(reference_arm)
            status.append(503 if bad else 200)
            mirrored.append(ref_mirrored)
            ids.append(f"r{i}")
        if keep_copy:
            arm.append(1)
            status.append(503 if cand_fails else 200)
            mirrored.append(True)
            ids.append(f"r{i}")
    return arm, status, mirrored, ids


def errors_after(
    rows: tuple[list[int], list[int], list[bool], list[str]], **kw: bool
) -> tuple[MetricResult, Comparison]:
    arm, status, mirrored, ids = rows
    data = make_samples(arm, [20.0] * len(arm), status, None, mirrored, ids)
    c = Comparison(analysis(ERRORS), "shadow", **kw)
    for start in range(0, len(data), 100):
        c.update(data.take(slice(start, start + 100)))
        result = c.assess().metrics[0]
    return result, c


def test_pairs_straddle_batches_and_either_side_may_come_first() -> None:
    pairs = ErrorPairs()
    pairs.add(np.array([1, 0]), np.array(["a", "b"]), np.array([True, False]))
    assert (pairs.pairs, pairs.unmatched_failures) == (0, 1)  # a failed copy waits
    pairs.add(np.array([0, 1]), np.array(["a", "b"]), np.array([False, False]))
    assert (pairs.pairs, pairs.only_candidate, pairs.only_reference) == (2, 1, 0)
    assert pairs.unmatched_failures == 0  # it found its primary
    pairs.add(np.array([1, 1]), np.array(["", "c"]), np.array([True, True]))
    assert pairs.unmatched_failures == 2  # no id never pairs; "c" still waits


def test_a_good_shadow_candidate_promotes_on_pairs() -> None:
    result, c = errors_after(shadow_rows(8000, np.random.default_rng(1)))
    assert c.decision is not None and c.decision.outcome == "promote"
    assert "bets aimed at the tolerance" in result.guarantee
    assert "paired by request_id" in result.guarantee
    assert result.method.startswith("paired error-rate")


def test_a_worse_shadow_candidate_aborts_on_pairs() -> None:
    result, c = errors_after(shadow_rows(8000, np.random.default_rng(2), cand_err=0.03))
    assert c.decision is not None and c.decision.outcome == "abort"
    assert result.lower > 0


def test_copies_that_never_arrive_never_promote() -> None:
    result, c = errors_after(shadow_rows(8000, np.random.default_rng(3), drop_copy=1.0))
    assert c.decision is None
    assert (result.n_candidate, result.lower, result.upper) == (0, -np.inf, np.inf)


def test_lost_primaries_of_failed_copies_count_against_the_candidate() -> None:
    """Copies of failing requests whose primary never arrives cannot hide the failures."""
    rng = np.random.default_rng(4)
    rows = shadow_rows(8000, rng, cand_err=0.03, drop_primary=1.0, copy_failures_only=True)
    result, c = errors_after(rows)
    assert c.decision is None or c.decision.outcome != "promote"
    assert result.upper > ERRORS.tolerance
    assert c._error_pairs.unmatched_failures > 200


def test_unpaired_rows_keep_the_two_sample_test() -> None:
    """Pseudo-samples (Prometheus) carry no pairing: ``paired_errors=False``, as before."""
    rows = shadow_rows(8000, np.random.default_rng(5))
    result, _ = errors_after(rows, paired_errors=False)
    assert result.method.startswith("error-rate difference")
    assert "union bound" in result.guarantee


def test_abort_beyond_tolerance_keeps_the_union_bound() -> None:
    beyond = Metric(name="errors", type="error-rate", tolerance=0.01, abort_on="beyond-tolerance")
    c = Comparison(analysis(beyond), "shadow")
    assert not c.pairs_errors(beyond)


def test_with_a_control_the_candidate_copy_pairs_with_the_control_copy() -> None:
    rows = shadow_rows(8000, np.random.default_rng(6), cand_err=0.03, reference_arm=2)
    arm, status, mirrored, ids = rows
    # production's primaries are recorded too; with a control they are not compared
    arm += [0] * 8000
    status += [503] * 8000
    mirrored += [False] * 8000
    ids += [f"r{i}" for i in range(8000)]
    result, c = errors_after((arm, status, mirrored, ids), control=True)
    assert c.decision is not None and c.decision.outcome == "abort"
    assert result.comparison == "candidate vs control"
    assert c._error_pairs.pairs > 7000
