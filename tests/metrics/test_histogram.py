"""Bucket counts -> pseudo-samples: exact counts, stated approximation, no data never a pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshlab.metrics.histogram import (
    ArmWindow,
    Buckets,
    counter_delta,
    describe,
    pseudo_latencies,
    spread_statuses,
    stride_order,
    window_columns,
)

INF = math.inf
BOUNDS = (1.0, 5.0, 25.0, 50.0, 100.0, INF)


def test_from_cumulative_turns_le_series_into_bucket_counts() -> None:
    buckets = Buckets.from_cumulative({1.0: 2, 5.0: 2, 25.0: 7, 50.0: 9, 100.0: 9, INF: 10})
    assert buckets.counts == (2, 0, 5, 2, 0, 1)
    assert buckets.total == 10


def test_from_cumulative_needs_the_inf_bucket() -> None:
    with pytest.raises(ValueError, match=r"\+Inf"):
        Buckets.from_cumulative({1.0: 2})


def test_pseudo_latencies_sit_at_upper_bounds_and_inf_at_the_last_finite_bound() -> None:
    buckets = Buckets(BOUNDS, (1, 0, 2, 0, 0, 1))
    assert pseudo_latencies(buckets, 4).tolist() == [1.0, 25.0, 25.0, 100.0]


def test_pseudo_latencies_resample_by_quantile_when_counts_disagree() -> None:
    buckets = Buckets(BOUNDS, (5, 0, 5, 0, 0, 0))
    values = pseudo_latencies(buckets, 20)
    assert values.size == 20
    assert (values == 1.0).sum() == 10 and (values == 25.0).sum() == 10


def test_counter_delta_detects_restarts() -> None:
    assert counter_delta(None, 7) == 7
    assert counter_delta(5, 7) == 2
    assert counter_delta(9, 3) == 3  # the process restarted: it counted 3 since


def test_no_requests_is_no_observations_not_zeros() -> None:
    ts, lat, status = window_columns(ArmWindow("candidate", {}, None), 0.0, 10.0)
    assert ts.size == lat.size == status.size == 0


def test_requests_without_latencies_are_refused() -> None:
    with pytest.raises(ValueError, match="no latency observations"):
        window_columns(ArmWindow("candidate", {200: 3}, None), 0.0, 1.0)


def test_window_columns_keep_exact_counts_and_spread_errors() -> None:
    window = ArmWindow("baseline", {200: 90, 503: 10}, Buckets(BOUNDS, (50, 30, 20, 0, 0, 0)))
    ts, lat, status = window_columns(window, 100.0, 110.0)
    assert ts.size == 100 and np.all((ts > 100.0) & (ts < 110.0)) and np.all(np.diff(ts) > 0)
    assert sorted(lat.tolist()) == [1.0] * 50 + [5.0] * 30 + [25.0] * 20
    assert (status == 503).sum() == 10
    # Errors spread over the window, not bunched at its start or end.
    positions = np.flatnonzero(status == 503)
    assert positions.min() < 10 and positions.max() > 90
    # No prefix is biased: the first half holds half of the fast requests, give or take a few.
    assert abs(int((lat[:50] == 1.0).sum()) - 25) <= 3


def test_describe_states_the_approximation_and_the_bucket_resolution() -> None:
    window = ArmWindow("candidate", {200: 4}, Buckets(BOUNDS, (0, 0, 0, 3, 0, 1)))
    text = describe([window, ArmWindow("baseline", {}, None)])
    assert "upper bound" in text
    assert "candidate: median in bucket (25, 50] ms (resolution 100% of its lower bound)" in text
    assert "1 request(s) above 100 ms placed at it" in text
    assert "baseline: no latency observations" in text


@given(st.integers(min_value=0, max_value=500))
def test_stride_order_is_a_permutation(n: int) -> None:
    assert sorted(stride_order(n).tolist()) == list(range(n))


@given(st.dictionaries(st.sampled_from([0, 200, 404, 500, 503]), st.integers(0, 60), min_size=1))
def test_spread_statuses_keeps_every_count(counts: dict[int, int]) -> None:
    n = sum(counts.values())
    statuses = spread_statuses(counts, n)
    for code, count in counts.items():
        assert int((statuses == code).sum()) == count


def test_window_errors_follow_the_one_rule() -> None:
    """A 404 is an error in the totals too (a 404 candidate was once promoted as error-free)."""
    from meshlab.metrics.histogram import ArmWindow

    window = ArmWindow("candidate", {200: 5, 302: 1, 404: 3, 503: 2, 0: 1}, None)
    assert (window.requests, window.errors) == (12, 6)
