"""Looks judged when a sequential pass stands (:mod:`meshlab.stats.results`): which metrics pass.

:func:`judge_tracking` gives :func:`meshlab.stats.replay_verdicts.judge`'s verdict per look plus
which of the metrics still waiting for their first pass pass alone there (their upper bound below
the tolerance, their lower bound not above the abort threshold), computing exact bounds also
where such a pass is not ruled out by the tests' certificates. :func:`judge_latched` turns that
into the verdicts of a block of looks given which metrics passed before it: the replay
(:class:`meshlab.stats.replay.Looks`) carries that from block to block, the simulation
(:mod:`meshlab.stats.simulate`) per replication.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from meshlab.stats.replay_verdicts import Test

BoolArray = npt.NDArray[np.bool_]


def judge_tracking(tests: list[Test], waiting: BoolArray) -> tuple[BoolArray, ...]:
    """:func:`judge`'s (abort, promote), and which ``waiting`` metrics pass alone at this look.

    Exact bounds where the verdict needs them (as ``judge``) and where a waiting metric's pass
    is not ruled out, each computed once.
    """
    size = waiting.shape[1]
    every = np.arange(size, dtype=np.int64)
    no_fail = np.asarray([t.no_fail(every) for t in tests], dtype=bool)
    no_pass = np.asarray([t.no_pass(every) for t in tests], dtype=bool)
    settled: BoolArray = np.asarray(no_fail.all(axis=0) & no_pass.any(axis=0), dtype=bool)
    fails = np.zeros((len(tests), size), dtype=bool)
    oks = np.zeros((len(tests), size), dtype=bool)
    for i, t in enumerate(tests):
        at = np.flatnonzero(~settled | (waiting[i] & ~no_pass[i]))
        if at.size:
            fails[i, at], oks[i, at] = t.exact(at)
    fail: BoolArray = np.asarray(~settled & fails.any(axis=0), dtype=bool)
    ok: BoolArray = np.asarray(~settled & ~fail & oks.all(axis=0), dtype=bool)
    return fail, ok, waiting & oks & ~fails


def judge_latched(
    tests: list[Test], size: int, latched: BoolArray
) -> tuple[BoolArray, BoolArray, BoolArray]:
    """(abort, promote, passed) per look when a pass stands (:mod:`meshlab.stats.results`):
    ``latched`` (metrics,) says which metrics passed before the first look, ``passed``
    (metrics, looks) which have passed by each look; a look promotes when every metric has and
    none fails there."""
    waiting = np.repeat(~latched[:, None], size, axis=1)
    abort, _, first = judge_tracking(tests, waiting)
    passed = latched[:, None] | np.logical_or.accumulate(first, axis=1)
    promote = ~abort & passed.all(axis=0)
    return abort, np.asarray(promote, dtype=np.bool_), np.asarray(passed, dtype=np.bool_)
