"""A small run of the control-arm calibration (analysis/control_calibration.py): with the biases
of real servers the guarantees break without a control and hold with one. Either half failing
(the engine stops modelling the bias, or the control rule loses its guarantee) fails here."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from meshlab.stats.simulate import Effect, Setup, SimMetric, World, simulate

REPS = 60
LIMIT = int(stats.binom.ppf(0.999, REPS, 0.05))  # a correct method exceeds this w.p. < 0.1%
CANARY = (SimMetric("latency", 0.10), SimMetric("error-rate", 0.01))
NULL = Effect()
LOAD = World(error_rate=0.001, load_slope=1.0)
COLD = World(error_rate=0.001, cold_start=0.5, cold_tau=1000.0)


def counts(
    world: World,
    control: bool,
    effect: Effect = NULL,
    metrics: tuple[SimMetric, ...] = CANARY,
    mode: str = "canary",
    seed: int = 1,
) -> tuple[int, int]:
    """(aborts, promotes) over REPS simulated experiments."""
    every = 500 if mode == "canary" else 100
    setup = Setup(
        metrics,
        mode=mode,
        weights=((math.inf, 0.25),),
        every=every,
        horizon=(40 if mode == "canary" else 200) * every,
        world=world,
        effect=effect,
        control=control,
    )
    out = simulate(setup, REPS, np.random.default_rng(seed))
    return int(out.abort.sum()), int(out.promote.sum())


def test_unequal_load_promotes_a_slower_candidate_only_without_a_control() -> None:
    slower = Effect(latency_ratio=1.10)
    assert counts(LOAD, False, slower)[1] > LIMIT  # guarantee broken: false promotes
    aborts, promotes = counts(LOAD, True, slower, seed=2)
    assert promotes <= LIMIT and aborts >= REPS - LIMIT
    aborts, promotes = counts(LOAD, True, seed=3)
    assert aborts <= LIMIT and promotes >= REPS - LIMIT


def test_a_cold_candidate_is_aborted_only_without_a_control() -> None:
    assert counts(COLD, False, seed=4)[0] > LIMIT  # guarantee broken: false aborts
    aborts, promotes = counts(COLD, True, seed=5)
    assert aborts <= LIMIT and promotes >= REPS - LIMIT


def test_a_divergence_floor_is_judged_against_the_control() -> None:
    worse = (*CANARY, SimMetric("prediction-divergence", 0.02))
    floor = World(floor=0.01)
    assert counts(floor, False, metrics=worse, mode="shadow", seed=6)[0] > LIMIT
    aborts, promotes = counts(floor, True, metrics=worse, mode="shadow", seed=7)
    assert aborts <= LIMIT and promotes >= REPS - LIMIT
    excess = Effect(divergence=0.02)
    aborts, promotes = counts(floor, True, excess, worse, "shadow", seed=8)
    assert promotes <= LIMIT and aborts >= REPS - LIMIT
