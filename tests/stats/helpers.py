"""Builders of synthetic samples for the statistics tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from meshlab.samples import Samples
from meshlab.spec.analysis import Analysis, Method, Metric


def make_samples(
    arm: Sequence[int] | np.ndarray,
    latency: Sequence[float] | np.ndarray,
    status: Sequence[int] | np.ndarray | None = None,
    prediction: Sequence[object] | None = None,
    mirrored: Sequence[bool] | np.ndarray | None = None,
    request_id: Sequence[str] | None = None,
    start: float = 1000.0,
) -> Samples:
    n = len(arm)
    preds = np.empty(n, dtype=object)
    if prediction is not None:
        preds[:] = list(prediction)
    return Samples(
        timestamp=start + 0.01 * np.arange(n, dtype=np.float64),
        arm=np.asarray(arm, dtype=np.int8),
        request_id=np.asarray(
            request_id if request_id is not None else [f"r{i}" for i in range(n)], dtype=np.str_
        ),
        latency_ms=np.asarray(latency, dtype=np.float64),
        status=np.asarray(status if status is not None else [200] * n, dtype=np.int32),
        prediction=preds,
        mirrored=np.asarray(mirrored if mirrored is not None else [False] * n, dtype=np.bool_),
    )


def analysis(
    *metrics: Metric, alpha: float = 0.05, beta: float = 0.05, method: Method = "sequential"
) -> Analysis:
    return Analysis(alpha=alpha, beta=beta, method=method, metrics=list(metrics))


LATENCY = Metric(name="latency-p50", type="latency", quantile=0.5, tolerance=0.10)
ERRORS = Metric(name="errors", type="error-rate", tolerance=0.01)
# abortOn: worse explicitly (the divergence default is beyond-tolerance since issue 13): these
# tests and the calibration rows they are checked against judge divergence against zero.
DIVERGENCE = Metric(
    name="divergence", type="prediction-divergence", tolerance=0.05, abort_on="worse"
)


def canary(
    rng: np.random.Generator,
    n: int,
    *,
    ratio: float = 1.0,
    err: tuple[float, float] = (0.01, 0.01),
    labels: tuple[Sequence[float], Sequence[float]] | None = None,
    weight: float = 0.5,
) -> Samples:
    """A canary stream: lognormal latencies (candidate scaled by ``ratio``), errors, labels."""
    arm = (rng.random(n) < weight).astype(np.int8)
    lat = np.exp(rng.normal(3.0, 0.5, n)) * np.where(arm == 1, ratio, 1.0)
    status = np.where(rng.random(n) < np.where(arm == 1, err[1], err[0]), 503, 200)
    probs = labels or ([0.7, 0.2, 0.1], [0.7, 0.2, 0.1])
    u = rng.random(n)
    code = np.where(
        arm == 1, np.searchsorted(np.cumsum(probs[1]), u), np.searchsorted(np.cumsum(probs[0]), u)
    )
    names = np.array(["legit", "review", "fraud", "x"])
    return make_samples(arm, lat, status, list(names[np.minimum(code, 3)]))
