"""Each decision rule on known cases, the verdict function, and the Comparison's bookkeeping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from meshlab.spec.analysis import Metric
from meshlab.stats import Comparison, MetricResult, decide, predictions_differ
from meshlab.stats.classic import hodges_lehmann
from meshlab.stats.latency import LogGrid, quantile_bounds
from meshlab.stats.rates import rate_difference, tv_interval

from .helpers import DIVERGENCE, ERRORS, LATENCY, analysis, canary, make_samples


def result(
    lower: float, upper: float, tol: float = 0.1, n: int = 100, name: str = "m"
) -> MetricResult:
    return MetricResult(name, "latency", 0.0, lower, upper, tol, 0.0, n, n, "test", "test")


def test_verdict_abort_promote_inconclusive() -> None:
    assert decide([result(0.01, 0.2), result(-0.1, 0.05)]).outcome == "abort"
    assert decide([result(-0.05, 0.05), result(-0.1, 0.09)]).outcome == "promote"
    v = decide([result(-0.05, 0.05), result(-0.1, 0.2, name="slow")])
    assert v.outcome == "inconclusive" and "slow" in v.reasons[0]
    assert decide([]).outcome == "inconclusive"
    no_data = result(-math.inf, math.inf, n=0)
    assert decide([no_data]).outcome == "inconclusive"
    assert "no data" in decide([no_data]).reasons[0]


def test_abort_beyond_tolerance_threshold() -> None:
    r = MetricResult("d", "prediction-divergence", 0.03, 0.02, 0.04, 0.05, 0.05, 9, 9, "t", "t")
    assert r.verdict == "pass"
    r2 = MetricResult("d", "prediction-divergence", 0.08, 0.06, 0.1, 0.05, 0.05, 9, 9, "t", "t")
    assert r2.verdict == "fail"


def test_quantile_bounds_cover_the_true_median() -> None:
    rng = np.random.default_rng(3)
    grid = LogGrid()
    x = np.exp(rng.normal(3.0, 0.5, 5000))
    cum = np.cumsum(np.bincount(grid.index(x), minlength=grid.size))
    lo, est, hi = quantile_bounds(cum, 0.5, 0.05, 0.05, grid)
    assert lo < math.exp(3.0) < hi
    assert est == pytest.approx(np.median(x), rel=2e-3)
    assert hi / lo < 1.15


def test_grid_bins_contain_their_values() -> None:
    grid = LogGrid()
    x = np.array([0.0, 1e-4, 1e-3, 0.5, 1.0, 20.0, 12345.678, 1e8])
    j, e = grid.index(x), grid.edges
    assert np.all(e[j] <= x) and np.all(x < e[j + 1])


def test_latency_regression_aborts_and_equal_latency_promotes() -> None:
    rng = np.random.default_rng(5)
    slow = Comparison(analysis(LATENCY))
    slow.update(canary(rng, 3000, ratio=1.3))
    a = slow.assess()
    assert a.verdict.outcome == "abort" and a.metrics[0].lower > 0
    same = Comparison(analysis(LATENCY))
    same.update(canary(rng, 8000))
    b = same.assess()
    assert b.verdict.outcome == "promote" and b.metrics[0].upper < 0.10
    assert b.metrics[0].n_baseline + b.metrics[0].n_candidate == 8000


def test_error_rate_difference_known_cases() -> None:
    lo, est, hi = rate_difference(50, 5000, 150, 5000, 0.05, 0.05)
    assert lo > 0 and float(est) == pytest.approx(0.02) and hi > 0.02
    lo, est, hi = rate_difference(50, 5000, 50, 5000, 0.05, 0.05)
    assert lo < 0 < hi < 0.01


def test_tv_interval_known_cases() -> None:
    base = np.array([700, 200, 100]) * 10
    lo, est, hi = tv_interval(base, base, 0.05, 0.05)
    assert lo == 0 and est == 0 and 0 < hi < 0.05
    lo, est, hi = tv_interval(base, np.array([500, 400, 100]) * 10, 0.05, 0.05)
    assert 0 < lo < 0.2 < hi and float(est) == pytest.approx(0.2)
    # Many labels: the per-label Bonferroni path.
    many = np.full(10, 1000)
    lo, _, hi = tv_interval(many, many, 0.05, 0.05)
    assert lo == 0 and 0 < hi < 0.2


def test_canary_divergence_and_errors_abort() -> None:
    rng = np.random.default_rng(8)
    c = Comparison(analysis(DIVERGENCE))
    c.update(canary(rng, 4000, labels=([0.7, 0.2, 0.1], [0.4, 0.5, 0.1])))
    assert c.assess().verdict.outcome == "abort"
    e = Comparison(analysis(ERRORS))
    e.update(canary(rng, 6000, err=(0.01, 0.06)))
    assert e.assess().verdict.outcome == "abort"


def test_shadow_pairs_by_request_id_across_batches() -> None:
    eps = Metric(name="divergence", type="prediction-divergence", tolerance=0.05, epsilon=0.01)
    c = Comparison(analysis(eps), mode="shadow")
    # baseline rows first, mirrored candidate copies in the next batch, one pair differs by > eps
    ids = ["a", "b", "c", "d"]
    c.update(make_samples([0] * 4, [10.0] * 4, prediction=[0.5, 0.5, 0.5, "x"], request_id=ids))
    c.update(
        make_samples(
            [1] * 4,
            [11.0] * 4,
            prediction=[0.505, 0.7, 0.5, "x"],
            mirrored=[True] * 4,
            request_id=ids,
        )
    )
    m = c.assess().metrics[0]
    assert (m.n_baseline, m.estimate) == (4, 0.25)
    assert m.lower > 0  # a shown disagreement: worse than baseline under abortOn: worse
    assert predictions_differ(1, 1.0, 0.0) is False and predictions_differ(True, 1, 0.5) is True


def test_no_data_for_a_metric_is_never_a_pass() -> None:
    c = Comparison(analysis(LATENCY, DIVERGENCE))
    rng = np.random.default_rng(1)
    s = canary(rng, 20000)
    c.update(s.take(s.arm == 0))  # baseline only
    a = c.assess()
    assert a.verdict.outcome == "inconclusive"
    assert all(m.verdict == "inconclusive" for m in a.metrics)


def test_decision_is_sticky_and_timed() -> None:
    rng = np.random.default_rng(2)
    c = Comparison(analysis(LATENCY))
    s = canary(rng, 4000, ratio=1.5)
    for start in range(0, 4000, 500):
        c.update(s.take(slice(start, start + 500)))
        c.assess()
    assert c.decision is not None and c.decision.outcome == "abort"
    assert c.decision.at_request == 499  # decided at the first look
    assert c.decision.at_time == pytest.approx(4.99)


def test_hodges_lehmann_recovers_a_scale_shift() -> None:
    rng = np.random.default_rng(4)
    b = np.exp(rng.normal(3.0, 0.4, 3000))
    c = np.exp(rng.normal(3.0, 0.4, 3000)) * 1.2
    lo, est, hi, p = hodges_lehmann(b, c, 0.05, 0.05)
    assert lo < 0.2 < hi and est == pytest.approx(0.2, abs=0.03) and p < 1e-6


def test_fixed_horizon_warns_when_looked_at_twice() -> None:
    rng = np.random.default_rng(6)
    c = Comparison(analysis(LATENCY, ERRORS, method="fixed-horizon"))
    s = canary(rng, 4000)
    c.update(s.take(slice(0, 2000)))
    first = c.assess()
    assert first.warnings == () and "Mann-Whitney" in first.metrics[0].method
    c.update(s.take(slice(2000, 4000)))
    assert "one look only" in c.assess().warnings[0]


def test_unknown_mode_is_a_config_error() -> None:
    from meshlab.errors import ConfigError

    with pytest.raises(ConfigError, match="--mode"):
        Comparison(analysis(LATENCY), mode="blue")  # type: ignore[arg-type]


def test_abort_on_is_read_from_yaml_in_camel_case() -> None:
    import yaml

    from meshlab.spec import parse_experiment

    from ..conftest import EXAMPLE

    data = yaml.safe_load(EXAMPLE.read_text())
    data["spec"]["analysis"]["metrics"][2]["abortOn"] = "beyond-tolerance"
    metric = parse_experiment(data).spec.analysis.metrics[2]
    assert metric.abort_on == "beyond-tolerance" and metric.tolerance == pytest.approx(0.02)
    c = Comparison(parse_experiment(data).spec.analysis, mode="shadow")
    assert [m.abort_on for m in c.analysis.metrics] == ["worse", "worse", "beyond-tolerance"]
