"""Bracketed comparisons on bucket pseudo-samples: never promote what the buckets cannot resolve."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from meshlab.metrics import (
    DEFAULT_BUCKETS_MS,
    BracketedComparison,
    envoy_bucket_settings,
    geometric_buckets,
    istio_buckets_annotation,
    lower_bounds,
)
from meshlab.metrics.histogram import ArmWindow, Buckets, window_columns
from meshlab.samples import Samples
from meshlab.spec.analysis import Analysis, Metric
from meshlab.stats.comparison import Comparison

ANALYSIS = Analysis(
    metrics=[
        Metric(name="latency-p50", type="latency", quantile=0.5, tolerance=0.10),
        Metric(name="errors", type="error-rate", tolerance=0.01),
    ]
)
N = 3000


def pseudo_samples(medians: tuple[float, float], bounds: tuple[float, ...], seed: int) -> Samples:
    """Lognormal latencies per arm, reduced to bucket counts, rebuilt as pseudo-samples."""
    rng = np.random.default_rng(seed)
    full = (*bounds, math.inf)
    columns = []
    for arm_index, (arm, median) in enumerate(zip(("baseline", "candidate"), medians, strict=True)):
        latencies = rng.lognormal(math.log(median), 0.3, N)
        counts, _ = np.histogram(latencies, bins=[0.0, *bounds, np.inf])
        window = ArmWindow(arm, {200: N}, Buckets(full, tuple(int(c) for c in counts)))
        ts, lat, status = window_columns(window, 0.0, 60.0)
        columns.append((arm_index, ts, lat, status))
    ts = np.concatenate([c[1] for c in columns])
    order = np.argsort(ts, kind="stable")
    arm = np.concatenate([np.full(N, c[0], dtype=np.int8) for c in columns])
    return Samples(
        ts[order], arm[order], np.array([str(i) for i in range(2 * N)]),
        np.concatenate([c[2] for c in columns])[order],
        np.concatenate([c[3] for c in columns])[order],
        np.full(2 * N, None, dtype=object), np.zeros(2 * N, dtype=np.bool_),
    )  # fmt: skip


def outcome(comparison: Comparison | BracketedComparison, samples: Samples) -> str:
    comparison.update(samples)
    return comparison.assess().verdict.outcome


def test_lower_bounds_map_bucket_values_and_leave_raw_values() -> None:
    values = np.array([0.5, 5.0, 25.0, 3600000.0, 7.3])
    assert lower_bounds(values, DEFAULT_BUCKETS_MS).tolist() == [0.0, 1.0, 10.0, 1800000.0, 7.3]


def test_upper_bound_placement_alone_promotes_a_slower_candidate() -> None:
    # The weakness the bracket exists for: 30 ms -> 45 ms share Istio's (25, 50] bucket.
    samples = pseudo_samples((30, 45), DEFAULT_BUCKETS_MS, seed=1)
    assert outcome(Comparison(ANALYSIS), samples) == "promote"
    bracketed = BracketedComparison(ANALYSIS, bounds=DEFAULT_BUCKETS_MS)
    assert outcome(bracketed, samples) == "inconclusive"


@pytest.mark.parametrize(("medians", "expected"), [((30, 30), "promote"), ((30, 45), "abort")])
def test_fine_buckets_let_bracketed_verdicts_match_raw_ones(
    medians: tuple[float, float], expected: str
) -> None:
    bounds = tuple(geometric_buckets(0.5, 60000, 1.02))
    assessment = BracketedComparison(ANALYSIS, bounds=bounds)
    assessment.update(pseudo_samples(medians, bounds, seed=2))
    result = assessment.assess()
    assert result.verdict.outcome == expected
    assert result.decision is not None and result.decision.outcome == expected
    assert any("bracketed" in w for w in result.warnings)
    latency = next(m for m in result.metrics if m.type == "latency")
    assert latency.lower <= latency.estimate <= latency.upper


def test_bucket_builders() -> None:
    bounds = geometric_buckets(1, 100, 1.5)
    assert bounds[0] == 1 and bounds[-1] >= 100 and len(bounds) == 13
    assert all(b / a <= 1.5 + 1e-3 for a, b in itertools.pairwise(bounds))
    annotation = istio_buckets_annotation([1, 2])
    assert json.loads(annotation["sidecar.istio.io/statsHistogramBuckets"]) == {
        "istiocustom": [1, 2]
    }
    with pytest.raises(ValueError):
        geometric_buckets(10, 1, 1.1)


def test_envoy_accepts_the_bucket_settings(tmp_path: Path) -> None:
    envoy = Path(sys.executable).with_name("envoy")
    config = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "stats_config": envoy_bucket_settings(geometric_buckets(0.5, 60000, 1.05)),
    }
    path = tmp_path / "envoy.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [str(envoy), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
