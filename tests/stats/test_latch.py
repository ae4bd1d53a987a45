"""A sequential pass stands (:mod:`meshlab.stats.results`), and the canary TV distance bets on
label pairs per event (:func:`meshlab.stats.bets.tv_verdicts`): the live comparison, the replay
at every look and the report agree, and the TV bets keep their levels."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import numpy as np

from meshlab.samples import Samples
from meshlab.stats import Comparison
from meshlab.stats.bets import TV_VARIANCE, event_counts, rejected, tv_bet_interval, tv_verdicts
from meshlab.stats.rates import _subsets
from meshlab.stats.results import MetricResult, decide

from .helpers import DIVERGENCE, LATENCY, analysis, canary
from .test_replay_looks import every_look, recorded


def result(upper: float, passed_at: int | None, lower: float = -0.1) -> MetricResult:
    return MetricResult(
        "latency-p50", "latency", 0.0, lower, upper, 0.1, 0.0, 10, 10, "m", "g", passed_at=passed_at
    )


def test_a_metric_that_passed_stays_passed_until_it_fails() -> None:
    assert result(0.15, None).verdict == "inconclusive"
    stood = result(0.15, 4000)
    assert stood.verdict == "pass"
    verdict = decide([stood, result(0.05, 5000)])
    assert verdict.outcome == "promote"
    assert "fell below tolerance 10% at request 4000 (now 15%" in verdict.reasons[0]
    assert "upper bound 5% < tolerance 10%" in verdict.reasons[1]
    assert decide([result(0.15, 4000, lower=0.02), result(0.05, 5000)]).outcome == "abort"


def slows_down(rng: np.random.Generator, calm: int, slow: int) -> Samples:
    """An identical candidate for ``calm`` rows, then 40% slower for ``slow`` rows."""
    first = canary(rng, calm, labels=([0.7, 0.2, 0.1], [0.7, 0.2, 0.1]))
    then = canary(rng, slow, ratio=1.4, labels=([0.7, 0.2, 0.1], [0.7, 0.2, 0.1]))
    then.timestamp[:] = first.timestamp[-1] + 0.01 * np.arange(1, slow + 1)
    ids = np.asarray([f"s{i}" for i in range(slow)])
    parts = {f.name: (getattr(first, f.name), getattr(then, f.name)) for f in fields(Samples)}
    parts["request_id"] = (first.request_id.astype(str), ids)
    return Samples(**{k: np.concatenate(v) for k, v in parts.items()})


def test_a_latency_pass_stands_after_the_candidate_slows_down_live_and_in_the_replay(
    tmp_path: Path,
) -> None:
    data = recorded(tmp_path, slows_down(np.random.default_rng(4), 3400, 1000))
    stand = Comparison(analysis(LATENCY))  # type: ignore[arg-type]
    plain = Comparison(analysis(LATENCY), latch=False)  # type: ignore[arg-type]
    passed_at = None
    for start in range(0, len(data), 100):
        batch = data.take(slice(start, start + 100))
        stand.update(batch)
        plain.update(batch)
        now = stand.assess().metrics[0]
        passed_at = passed_at or now.passed_at
    assert passed_at is not None and passed_at <= 3400  # passed while the arms were alike
    last, unlatched = stand.assess().metrics[0], plain.assess().metrics[0]
    assert last.upper > last.tolerance and last.verdict == "pass"  # the bound moved, the pass stood
    assert unlatched.verdict != "pass"
    # the replay remembers the first passing look across its blocks, at every look
    verdicts = every_look(data, 100, "canary", LATENCY)
    first = verdicts.index("promote")
    assert set(verdicts[first:]) == {"promote"} and (first + 1) * 100 == passed_at


def test_tv_bets_keep_both_levels_under_continuous_monitoring() -> None:
    """A/A labels (3 categories): P(any event's lower bound ever above its true difference 0)
    <= alpha, and the promote side finds a TV within tolerance."""
    rng = np.random.default_rng(12)
    reps, n, level, tol = 300, 3000, 0.1, 0.05
    probs = np.outer([0.6, 0.3, 0.1], [0.6, 0.3, 0.1]).ravel()
    steps = rng.multinomial(1, probs, size=(reps, n)).reshape(reps, n, 3, 3)
    joint = np.cumsum(steps, axis=1)[:, 19::20]
    sets = _subsets(3)
    counts = event_counts(joint, sets)  # (reps, looks, events, levels)
    crossed = rejected(counts, 0.0, level / 6, tol / TV_VARIANCE, True).any(axis=(1, 2)).mean()
    assert crossed <= level + 3 * math.sqrt(level * (1 - level) / reps), crossed
    fails, passes = tv_verdicts(joint, sets, (0.0, tol), level, 0.05, tol / TV_VARIANCE)
    assert fails.any(axis=1).mean() <= crossed
    assert passes[:, -1].mean() > 0.5  # by 3,000 pairs most A/A runs show a TV within 5%
    # the reported interval decides exactly as the verdicts, at every look of one run
    for j in range(joint.shape[1]):
        lo, est, hi = tv_bet_interval(joint[0, j], sets, level, 0.05, tol / TV_VARIANCE, (0.0, tol))
        assert (lo > 0.0) == fails[0, j] and (hi < tol) == passes[0, j]
        assert lo <= est <= hi


def test_a_50pct_canary_judges_tv_by_label_pairs_and_a_5pct_one_by_the_arms(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(3)
    moved = ([0.7, 0.2, 0.1], [0.6, 0.3, 0.1])  # TV 0.1, twice the tolerance
    even = Comparison(analysis(DIVERGENCE), candidate_share=0.5)  # type: ignore[arg-type]
    even.update(canary(rng, 6000, labels=moved))
    tv = even.assess().metrics[0]
    assert "pairs of labelled requests" in tv.guarantee and "constant bets" in tv.guarantee
    assert tv.verdict == "fail" and tv.lower > 0
    small = Comparison(analysis(DIVERGENCE), candidate_share=0.05)  # type: ignore[arg-type]
    small.update(canary(rng, 6000, labels=moved, weight=0.05))
    assert "Bonferroni over 6 events" in small.assess().metrics[0].guarantee
    # the replay pairs labels as the live comparison does, at every look, a 4th label arriving
    late = canary(rng, 4000, labels=([0.7, 0.3, 0.0], [0.66, 0.3, 0.04]))
    assert "abort" in every_look(recorded(tmp_path, late), 50, "canary", DIVERGENCE)
