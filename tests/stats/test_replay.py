"""The fast replay gives exactly what assessing after every batch gives, and its certificates
never claim a bound they cannot prove."""

from __future__ import annotations

import numpy as np
import pytest

from meshlab.samples import Samples
from meshlab.spec.analysis import Metric
from meshlab.stats import Comparison
from meshlab.stats.boundaries import difference_at_least, difference_upper
from meshlab.stats.replay import _stepwise, replay

from .helpers import DIVERGENCE, ERRORS, LATENCY, analysis, canary, make_samples

P90 = Metric(name="latency-p90", type="latency", quantile=0.9, tolerance=0.2)
BEYOND = Metric(
    name="divergence", type="prediction-divergence", tolerance=0.05, abort_on="beyond-tolerance"
)


def same(data: Samples, every: int, *metrics: Metric, mode: str = "canary") -> None:
    spec = analysis(*metrics)

    def make() -> Comparison:
        return Comparison(spec, mode)  # type: ignore[arg-type]

    fast, slow = replay(make, data, every), _stepwise(make(), data, every)
    assert fast.decision == slow.decision
    assert fast.verdict == slow.verdict
    assert fast.metrics == slow.metrics


@pytest.mark.parametrize(
    ("seed", "ratio", "err", "labels"),
    [
        (0, 1.0, (0.01, 0.01), None),  # promotes
        (1, 1.15, (0.01, 0.01), None),  # aborts on latency
        (2, 1.0, (0.01, 0.04), None),  # aborts on errors
        (3, 1.0, (0.01, 0.01), ([0.7, 0.2, 0.1], [0.55, 0.35, 0.1])),  # aborts on divergence
    ],
)
def test_replay_matches_assessing_after_every_batch(
    seed: int, ratio: float, err: tuple[float, float], labels: tuple[list[float], ...] | None
) -> None:
    data = canary(np.random.default_rng(seed), 2500, ratio=ratio, err=err, labels=labels)
    same(data, 50, LATENCY, P90, ERRORS, DIVERGENCE)
    same(data, 23, LATENCY, ERRORS, BEYOND)


def test_replay_matches_when_no_look_decides_and_labels_appear_late() -> None:
    rng = np.random.default_rng(5)
    data = canary(rng, 3000, labels=([0.7, 0.3, 0.0], [0.7, 0.25, 0.05]))
    same(data, 40, BEYOND)


def test_replay_matches_in_shadow_mode() -> None:
    rng = np.random.default_rng(6)
    n = 1500
    base = np.exp(rng.normal(3.0, 0.4, n))
    arm = np.tile([0, 1], n)
    lat = np.repeat(base, 2) * np.where(arm == 1, 1.02, 1.0)
    labels = np.where(rng.random(n) < 0.1, "fraud", "legit")
    flip = rng.random(n) < 0.01
    preds = np.stack([labels, np.where(flip, "review", labels)], axis=1).ravel().tolist()
    ids = np.repeat([f"r{i}" for i in range(n)], 2).tolist()
    data = make_samples(arm, lat, prediction=preds, mirrored=arm == 1, request_id=ids)
    same(data, 30, LATENCY, ERRORS, DIVERGENCE, mode="shadow")


def test_certificate_never_claims_more_than_the_bound() -> None:
    rng = np.random.default_rng(7)
    nh = rng.integers(0, 30_000, 3000).astype(float)
    nl = rng.integers(0, 30_000, 3000).astype(float)
    sh = rng.binomial(nh.astype(int), rng.uniform(0, 0.2, 3000)).astype(float)
    sl = rng.binomial(nl.astype(int), rng.uniform(0, 0.2, 3000)).astype(float)
    bound = difference_upper(sh, nh, sl, nl, 0.01)
    shown = 0
    for t in (-0.05, -0.01, 0.0, 0.005, 0.02, 0.1):
        cert = difference_at_least(sh, nh, sl, nl, 0.01, t)
        assert not np.any(cert & (bound < t))
        shown += int(cert.sum())
    assert shown > 3000  # and it does rule most cases out (the replay's speed depends on it)


def test_replay_counts_errors_by_the_same_rule_as_the_live_comparison() -> None:
    """404s are errors unless ``expectedStatuses`` lists them, in the replay as live."""
    rng = np.random.default_rng(11)
    n = 3000
    arm = (rng.random(n) < 0.5).astype(np.int8)
    lat = np.exp(rng.normal(3.0, 0.5, n))
    status = np.where((arm == 1) & (rng.random(n) < 0.2), 404, 200)
    data = make_samples(arm, lat, status=status)
    for expected in ([], [404]):
        spec = analysis(ERRORS).model_copy(update={"expected_statuses": expected})

        def make(spec: object = spec) -> Comparison:
            return Comparison(spec, "canary")  # type: ignore[arg-type]

        fast, slow = replay(make, data, 50), _stepwise(make(), data, 50)
        assert (fast.verdict, fast.metrics) == (slow.verdict, slow.metrics)
        assert fast.verdict.outcome == ("abort" if not expected else "promote")
