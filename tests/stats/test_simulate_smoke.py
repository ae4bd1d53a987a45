"""A small run of the calibration's engine: the guarantees hold with the efficiency levers on, and
the levers still buy what the study says (a regression of either fails here)."""

from __future__ import annotations

import numpy as np
from scipy import stats

from meshlab.stats.simulate import Effect, Levers, Setup, SimMetric, simulate, summarize

REPS = 60
LIMIT = int(stats.binom.ppf(0.999, REPS, 0.05))  # a correct method fails this w.p. < 0.1%
METRICS = (
    SimMetric("latency", 0.10),
    SimMetric("error-rate", 0.01),
    SimMetric("prediction-divergence", 0.05),
)
FIXED_N = 8399  # one-look size of this design (analysis/calibration.py)
ADOPTED = Levers()
FIRST = Levers(  # every efficiency lever off (the lever table's first row, bar its grids)
    tuned_design=False,
    paired_errors=False,
    arm_designs=False,
    bets=False,
    shadow_bets=False,
    tv_bets=False,
    latch=False,
)


def run(effect: Effect, levers: Levers = ADOPTED, seed: int = 3) -> dict[str, float]:
    setup = Setup(METRICS, every=200, horizon=4 * FIXED_N, effect=effect, levers=levers)
    out = simulate(setup, REPS, np.random.default_rng(seed))
    return {
        **summarize(out),
        "aborts": float(out.abort.sum()),
        "promotes": float(out.promote.sum()),
    }


def test_aa_runs_rarely_abort_and_promote_sooner_than_the_first_version() -> None:
    now = run(Effect())
    first = run(Effect(), FIRST)
    assert now["aborts"] <= LIMIT
    assert now["promotes"] >= REPS - LIMIT
    # the study: 0.57 of the one-look size now, 0.93 before the levers (median)
    assert now["median"] / FIXED_N <= 0.75
    assert now["median"] < first["median"]


def test_errors_at_the_tolerance_are_rarely_promoted() -> None:
    out = run(Effect(error_delta=0.01), seed=4)
    assert out["promotes"] <= LIMIT
    assert out["aborts"] >= REPS - LIMIT
