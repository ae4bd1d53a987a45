"""SourcedComparison: latency and errors from Prometheus's pseudo-samples, divergence from raw rows.

Pure statistics on synthetic rows (no backend): each metric must be computed from its own source
only, with the error budget one Comparison over all metrics would give it.
"""

from __future__ import annotations

import numpy as np

from meshlab.metrics import BracketedComparison
from meshlab.metrics.sourced import PSEUDO_PREFIX, SourcedComparison, fed_by_line, pseudo_mask
from meshlab.samples import Sample, Samples
from meshlab.stats import Comparison
from tests.stats.helpers import DIVERGENCE, ERRORS, LATENCY, analysis

BOUNDS = (*(round(10 * 1.02**k, 6) for k in range(100)), float("inf"))  # 2%-wide buckets
AT_A_BOUND = BOUNDS[46]  # a pseudo-sample's latency sits at its bucket's upper bound


def rows(n: int, *, bad_predictions: bool, start: float = 1000.0) -> list[Sample]:
    """n requests seen twice: as Prometheus pseudo-samples (latency at a bucket bound, no
    prediction) and as raw rows (the load's primary and the collector's shadow, predictions)."""
    out: list[Sample] = []
    for i in range(n):
        ts = start + 0.01 * i
        out.append(Sample(ts, "baseline", f"{PSEUDO_PREFIX}b{i}", AT_A_BOUND, 200))
        out.append(Sample(ts, "candidate", f"{PSEUDO_PREFIX}c{i}", AT_A_BOUND, 200, "", True))
        pred = "1" if i % 2 else "0"
        out.append(Sample(ts, "baseline", f"r{i}", 900.0, 500, pred))  # raw timings: ignored
        shadow = ("0" if pred == "1" else "1") if bad_predictions else pred
        out.append(Sample(ts, "candidate", f"r{i}", 1.0, 200, shadow, True))
    return out


def test_each_metric_reads_only_its_own_source() -> None:
    spec = analysis(LATENCY, ERRORS, DIVERGENCE)
    sourced = SourcedComparison(spec, "shadow", bounds=BOUNDS)
    sourced.update(Samples.from_rows(rows(3000, bad_predictions=False)))
    result = sourced.assess()
    by_name = {m.name: m for m in result.metrics}
    # Latency and errors saw 3000 pseudo-samples per arm, none of the raw rows (whose baseline
    # is ~25x slower and all errors); divergence saw the 3000 raw pairs.
    assert by_name["latency-p50"].n_baseline == by_name["latency-p50"].n_candidate == 3000
    assert by_name["errors"].estimate == 0.0
    assert by_name["divergence"].n_candidate == 3000 and by_name["divergence"].estimate == 0.0
    assert [m.name for m in result.metrics] == ["latency-p50", "errors", "divergence"]
    assert result.verdict.outcome == "promote", result.verdict.reasons
    assert result.n_samples == 12000
    assert sourced.decision is not None and sourced.decision.outcome == "promote"


def test_divergence_from_the_collector_aborts_while_prometheus_looks_fine() -> None:
    sourced = SourcedComparison(analysis(LATENCY, ERRORS, DIVERGENCE), "shadow", bounds=BOUNDS)
    sourced.update(Samples.from_rows(rows(200, bad_predictions=True)))
    result = sourced.assess()
    assert result.verdict.outcome == "abort"
    assert all("divergence" in reason for reason in result.verdict.reasons)


def test_every_metric_keeps_alpha_over_k_as_in_one_comparison() -> None:
    spec = analysis(LATENCY, ERRORS, DIVERGENCE, alpha=0.06)
    sourced = SourcedComparison(spec, "shadow", bounds=BOUNDS)
    one = Comparison(spec, "shadow")
    assert isinstance(sourced.prometheus, BracketedComparison) and sourced.raw is not None
    shares = [
        sourced.prometheus.pessimistic.alpha_share,
        sourced.raw.alpha_share,
    ]
    assert np.allclose(shares, one.alpha_share)  # 0.06 / 3 each
    assert sourced.fed_by == {
        "latency-p50": "Prometheus",
        "errors": "Prometheus",
        "divergence": "the load generator's primaries and the collector's shadow predictions",
    }


def test_a_part_without_metrics_is_left_out() -> None:
    sourced = SourcedComparison(analysis(LATENCY), "shadow", bounds=BOUNDS)
    assert sourced.raw is None
    sourced.update(Samples.from_rows(rows(50, bad_predictions=True)))
    assert [m.name for m in sourced.assess().metrics] == ["latency-p50"]


def test_pseudo_rows_are_the_prometheus_ids_and_the_report_line_names_the_sources() -> None:
    batch = Samples.from_rows(rows(2, bad_predictions=False))
    assert pseudo_mask(batch).tolist() == [True, True, False, False] * 2
    line = fed_by_line(analysis(LATENCY, ERRORS, DIVERGENCE))
    assert line.startswith("metrics fed by source: latency-p50, errors: both arms from Prometheus")
    assert "divergence: the primary's predictions from the load generator, the shadow's from " \
        "the collector" in line  # fmt: skip
