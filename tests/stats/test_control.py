"""The control arm (issue 13): candidate vs control comparisons, divergence above a measured floor.

Synthetic streams only (pure statistics): production, control and candidate rows with the
biases of real servers built in, i.e. latency growing with an arm's share of the load and
predictions that flip on a fraction of requests.
"""

from __future__ import annotations

import io

import numpy as np
import pytest

from meshlab.errors import SamplesError
from meshlab.samples import CONTROL, Sample, Samples, iter_samples, samples_to_csv
from meshlab.spec.analysis import Metric
from meshlab.stats import Comparison
from meshlab.stats.serialize import assessment_to_json

from .helpers import ERRORS, LATENCY, analysis, make_samples

STRICT_DIVERGENCE = Metric(
    name="divergence", type="prediction-divergence", tolerance=0.05, abort_on="worse"
)


def loaded_canary(rng: np.random.Generator, n: int, w: float, control: bool) -> Samples:
    """Equal models; median latency 20 ms x (1 + 2 x the arm's share of the traffic)."""
    u = rng.random(n)
    if control:
        arm = np.where(u < w, 1, np.where(u < 2 * w, CONTROL, 0))
        share = np.where(arm == 0, 1 - 2 * w, w)
    else:
        arm = np.where(u < w, 1, 0)
        share = np.where(arm == 0, 1 - w, w)
    lat = 20.0 * (1 + 2 * share) * np.exp(rng.normal(0.0, 0.3, n))
    return make_samples(arm, lat, prediction=["a"] * n)


@pytest.mark.parametrize("control", [False, True])
def test_unequal_load_reads_as_faster_only_without_a_control(control: bool) -> None:
    rng = np.random.default_rng(3)
    c = Comparison(analysis(LATENCY, ERRORS), control=control)
    c.update(loaded_canary(rng, 30_000, 0.1, control))
    a = c.assess()
    lat = a.metrics[0]
    assert lat.comparison == ("candidate vs control" if control else "candidate vs baseline")
    assert assessment_to_json(a)["metrics"][0]["comparison"] == lat.comparison
    if control:  # same share: no bias, the interval covers 0
        assert lat.lower < 0 < lat.upper
        assert a.verdict.outcome == "promote"
    else:  # the less-loaded candidate reads ~40% "faster" than production
        assert lat.estimate < -0.3 and lat.upper < -0.25


def floor_shadow(
    rng: np.random.Generator, n: int, floor: float, excess: float, control: bool
) -> Samples:
    """Production rows, candidate (and control) mirrored copies; each copy flips w.p. floor."""
    ids = [f"r{i}" for i in range(n)]
    cand = np.where(rng.random(n) < floor + excess, 1, 0)
    arms, preds, mirrored, rid = [0] * n, [0] * n, [False] * n, list(ids)
    arms += [1] * n
    preds += cand.tolist()
    mirrored += [True] * n
    rid += ids
    if control:
        arms += [CONTROL] * n
        preds += np.where(rng.random(n) < floor, 1, 0).tolist()
        mirrored += [True] * n
        rid += ids
    m = len(arms)
    return make_samples(arms, [10.0] * m, prediction=preds, mirrored=mirrored, request_id=rid)


def test_shadow_floor_aborts_under_worse_without_control_and_not_with_one() -> None:
    rng = np.random.default_rng(5)
    s = floor_shadow(rng, 40_000, 0.01, 0.0, control=False)
    bare = Comparison(analysis(STRICT_DIVERGENCE), mode="shadow")
    bare.update(s)
    assert bare.assess().verdict.outcome == "abort"  # the 1% floor read as a regression
    s = floor_shadow(rng, 40_000, 0.01, 0.0, control=True)
    fair = Comparison(analysis(STRICT_DIVERGENCE), mode="shadow", control=True)
    fair.update(s)
    m = fair.assess().metrics[0]
    assert m.comparison == "candidate vs control" and "above the control" in m.method
    assert m.lower < 0.0 < m.upper < 0.05 and fair.assess().verdict.outcome == "promote"


def test_shadow_excess_above_the_floor_is_caught_with_a_control() -> None:
    rng = np.random.default_rng(6)
    c = Comparison(analysis(STRICT_DIVERGENCE), mode="shadow", control=True)
    c.update(floor_shadow(rng, 20_000, 0.01, 0.10, control=True))
    m = c.assess().metrics[0]
    assert m.estimate == pytest.approx(0.10, abs=0.01) and m.lower > 0.05
    assert c.assess().verdict.outcome == "abort"


def test_divergence_defaults_to_beyond_tolerance_and_worse_is_kept_when_asked() -> None:
    default = Metric(name="d", type="prediction-divergence", tolerance=0.05)
    assert default.abort_on == "beyond-tolerance"
    assert STRICT_DIVERGENCE.abort_on == "worse"
    assert Metric(name="l", type="latency", tolerance=0.1).abort_on == "worse"
    rng = np.random.default_rng(7)
    c = Comparison(analysis(default), mode="shadow")
    c.update(floor_shadow(rng, 40_000, 0.01, 0.0, control=False))
    assert c.assess().verdict.outcome == "promote"  # floor 1% well inside the 5% tolerance


def test_control_rows_are_ignored_without_a_control_and_files_round_trip() -> None:
    rows = [
        Sample(1.0, "baseline", "a", 10.0, 200, '"x"'),
        Sample(1.1, "candidate", "a", 11.0, 200, '"x"', mirrored=True),
        Sample(1.2, "control", "a", 12.0, 200, '"y"', mirrored=True),
    ]
    parsed = Samples.from_rows(list(iter_samples(io.StringIO(samples_to_csv(rows)))))
    assert parsed.arm.tolist() == [0, 1, 2]
    c = Comparison(analysis(LATENCY), mode="shadow")
    c.update(parsed)
    assert (c.assess().metrics[0].n_baseline, c.assess().metrics[0].n_candidate) == (1, 1)
    twice = [*rows, Sample(1.3, "control", "a", 12.0, 200, '"y"', mirrored=True)]
    with pytest.raises(SamplesError, match="appears twice"):
        list(iter_samples(io.StringIO(samples_to_csv(twice))))
    bad = samples_to_csv(rows).replace("control", "shadow")
    with pytest.raises(SamplesError, match="'baseline', 'candidate' or 'control'"):
        list(iter_samples(io.StringIO(bad)))


def test_canary_divergence_compares_the_candidate_with_the_control() -> None:
    """Production's labels drifted (say, a warm cache of stale answers); control and candidate
    agree, so with a control the TV distance is near 0 and without one it is ~0.2."""
    rng = np.random.default_rng(8)
    n = 30_000
    u = rng.random(n)
    arm = np.where(u < 0.25, 1, np.where(u < 0.5, CONTROL, 0))
    fresh = np.where(rng.random(n) < 0.7, "a", "b")
    stale = np.where(rng.random(n) < 0.9, "a", "b")
    labels = np.where(arm == 0, stale, fresh).tolist()
    s = make_samples(arm, [10.0] * n, prediction=labels)
    fair = Comparison(analysis(STRICT_DIVERGENCE), control=True)
    fair.update(s)
    m = fair.assess().metrics[0]
    assert m.upper < 0.05 and (m.n_baseline, m.n_candidate) == (
        int((arm == CONTROL).sum()),
        int((arm == 1).sum()),
    )
    bare = Comparison(analysis(STRICT_DIVERGENCE))
    bare.update(s)
    assert bare.assess().metrics[0].lower > 0.1


@pytest.mark.parametrize("control", [False, True])
def test_replay_of_a_file_with_control_rows_matches_looking_after_every_batch(
    control: bool,
) -> None:
    from meshlab.stats.replay import _stepwise, replay

    rng = np.random.default_rng(9)
    s = loaded_canary(rng, 12_000, 0.25, control=True)
    make = lambda: Comparison(analysis(LATENCY, ERRORS), control=control)  # noqa: E731
    fast, slow = replay(make, s, 200), _stepwise(make(), s, 200)
    assert fast.decision == slow.decision and fast.verdict == slow.verdict
    shadow = floor_shadow(rng, 3000, 0.01, 0.0, control=True)
    make_shadow = lambda: Comparison(  # noqa: E731
        analysis(LATENCY, STRICT_DIVERGENCE), mode="shadow", control=control
    )
    fast, slow = replay(make_shadow, shadow, 500), _stepwise(make_shadow(), shadow, 500)
    assert fast.decision == slow.decision and fast.metrics == slow.metrics
