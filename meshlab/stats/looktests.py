"""The verdict tests of one simulated look: each metric judged as ``Comparison`` judges it.

:func:`tests` builds, per metric and over the active replications of
:func:`meshlab.stats.simulate.simulate`, the same test the replay uses
(:mod:`meshlab.stats.replay`): two-arm canary differences (error rate, TV events) as
:class:`~meshlab.stats.replay.Difference` tests whose cheap certificates spare most exact bounds,
the others exact (:class:`Bounded`). :func:`exact_bounds` gives every metric's exact interval (for
the running intersection), :func:`meshlab.stats.standing.judge_tracking` the verdict plus which metrics pass alone (which
metric binds). Error rates that abort on "worse" are judged by bets on grouped requests
(:mod:`meshlab.stats.bets`: shadow copies, canary requests grouped by :mod:`meshlab.stats.arrival`), as
``Comparison`` and the replay judge them; ``Levers(shadow_bets=False)`` brings back the discordant
pairs (:func:`meshlab.stats.rates.paired_error_bounds`), ``Levers(paired_errors=False)`` the
two-sample union bound, ``Levers(bets=False)`` the canary's product of mixtures
(``Levers(groups=False)``: bets on one-to-one pairs near an even split only), for the
calibration's lever table. The canary's conditional abort side (:func:`meshlab.stats.rates.ratio_lower`) is wired
here only, for the calibration to measure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from meshlab.stats import bets, latency, rates, tolbets
from meshlab.stats.boundaries import difference_upper
from meshlab.stats.design import DESIGN_FACTOR, arm_designs, compared_share
from meshlab.stats.latency import LogGrid
from meshlab.stats.replay import Difference, Exact, Test

if TYPE_CHECKING:
    from meshlab.stats.simulate import Levers, Setup

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


class Bounded(Exact):
    """An exact test that keeps its bounds (-inf, inf where an arm has no data yet)."""

    def __init__(self, lo: FloatArray, hi: FloatArray, thr: float, tol: float, data: BoolArray):
        self.lo = np.where(data, lo, -np.inf)
        self.hi = np.where(data, hi, np.inf)
        super().__init__(self.lo > thr, self.hi < tol)


class _Bets(Exact):
    """Error rates by bets on grouped requests (counts per replication, snapshot and level):
    aimed at the tolerance (:mod:`meshlab.stats.tolbets`), or with ``aimed=False`` the mixture
    over bet sizes on the total counts; verdicts from two capitals, bounds only when asked."""

    def __init__(
        self,
        counts: FloatArray,
        a: float,
        b: float,
        thr: float,
        tol: float,
        grouping: bets.Grouping,
        levers: Levers,
        copies: bool = False,
    ) -> None:
        self.aimed, self.copies = levers.aimed_bets, copies
        self.counts = counts if self.aimed else counts.sum(axis=-2)
        self.a, self.b, self.thr, self.tol = a, b, thr, tol
        self.grouping = grouping
        self.scale = levers.bet_scale * bets.bet_scale(tol, grouping)
        if self.aimed:
            verdict = tolbets.verdicts(self.counts, (thr, tol), a, b, tol, grouping, copies=copies)
        else:
            verdict = bets.verdicts(self.counts, (thr, tol), a, b, self.scale, grouping)
        super().__init__(*verdict)

    def bounds(self) -> tuple[FloatArray, FloatArray]:
        thresholds, g = (self.thr, self.tol), self.grouping
        if self.aimed:
            lo, hi = tolbets.bounds(
                self.counts, self.a, self.b, self.tol, thresholds, g, copies=self.copies
            )
        else:
            lo, hi = bets.bet_bounds(self.counts, self.a, self.b, self.scale, thresholds, g)
        data = self.counts.sum(axis=(-2, -1) if self.aimed else -1) > 0
        return np.where(data, lo, -np.inf), np.where(data, hi, np.inf)


class _TvBets(Exact):
    """Canary TV distance by bets on label pairs per event (joint counts (reps, K, K))."""

    def __init__(self, joint: FloatArray, a: float, b: float, thr: float, tol: float) -> None:
        self.joint, self.a, self.b, self.thr, self.tol = joint, a, b, thr, tol
        self.sets = rates._subsets(joint.shape[-1])
        self.scale = tol / bets.TV_VARIANCE
        super().__init__(*bets.tv_verdicts(joint, self.sets, (thr, tol), a, b, self.scale))

    def bounds(self) -> tuple[FloatArray, FloatArray]:
        thresholds = (self.thr, self.tol)
        lo, hi = bets.tv_bet_bounds(self.joint, self.sets, self.a, self.b, self.scale, thresholds)
        data = self.joint.sum(axis=(-2, -1)) > 0
        return np.where(data, lo, -np.inf), np.where(data, hi, np.inf)


class _Either(Test):
    """Abort side from an exact flag, promote side from another test (the conditional lever)."""

    def __init__(self, fail: BoolArray, upper: Difference) -> None:
        self.fail, self.upper = fail, upper

    def no_fail(self, at: npt.NDArray[np.int64]) -> BoolArray:
        return np.asarray(~self.fail[at], dtype=np.bool_)

    def no_pass(self, at: npt.NDArray[np.int64]) -> BoolArray:
        return self.upper.no_pass(at)

    def exact(self, at: npt.NDArray[np.int64]) -> tuple[BoolArray, BoolArray]:
        return self.fail[at], self.upper.exact(at)[1]


def exact_bounds(tests: list[Test]) -> tuple[FloatArray, FloatArray]:
    """(lower, upper) per metric and look: what ``Comparison`` reports, from each metric's test."""
    lows, highs = [], []
    for t in tests:
        if isinstance(t, Bounded):
            lows.append(t.lo)
            highs.append(t.hi)
            continue
        if isinstance(t, _Bets | _TvBets):
            lo, hi = t.bounds()
            lows.append(lo)
            highs.append(hi)
            continue
        d = t.upper if isinstance(t, _Either) else t
        assert isinstance(d, Difference)
        lo = -difference_upper(d.sb, d.nb, d.sc, d.nc, d.a, d.fail_design)
        hi = difference_upper(d.sc, d.nc, d.sb, d.nb, d.b, d.pass_design)
        if d.events:  # TV: the largest event bound on either side, clipped as tv_interval does
            lo, hi = np.clip(lo, 0.0, 1.0).max(axis=-1), np.clip(hi, 0.0, 1.0).max(axis=-1)
        else:  # one event, kept on a trailing axis of length 1
            lo, hi = lo[:, 0], hi[:, 0]
        if isinstance(t, _Either):  # only the verdict of its abort side is known
            lo = np.where(t.fail, np.inf, -np.inf)
        lows.append(np.where(d.has_data, lo, -np.inf))
        highs.append(np.where(d.has_data, hi, np.inf))
    return np.asarray(lows, dtype=np.float64), np.asarray(highs, dtype=np.float64)


def tests(
    s: Setup,
    act: npt.NDArray[np.intp],
    hist: npt.NDArray[np.int64],
    n: npt.NDArray[np.int64],
    err: npt.NDArray[np.int64],
    cats: npt.NDArray[np.int64],
    pairs: npt.NDArray[np.int64],
    differ: npt.NDArray[np.int64],
    alpha_share: float,
    designs: list[float],
    weight: float,
    grid: LogGrid,
    arrival: FloatArray | None = None,
    labels: FloatArray | None = None,
    pair_levels: FloatArray | None = None,
) -> list[Test]:
    """Per metric, the verdict test over the active replications (as ``Comparison`` judges).

    Two-arm canary differences (error rate, TV events) are :class:`Difference` tests whose
    certificates spare most exact bounds; the others are exact (:class:`_Bounded`).
    """
    out: list[Test] = []
    cum = np.cumsum(hist[:, act], axis=2) if hist.shape[2] else None
    data = (n[0, act] > 0) & (n[1, act] > 0)
    a, b = alpha_share, s.beta
    share = compared_share(weight, s.control)
    # as Comparison(candidate_share=...): the split planned for the first step, fixed up front
    planned = s.planned_share()
    grouping = s.grouping()  # canary errors by bets on grouped requests at this split
    for m, dn in zip(s.metrics, designs, strict=True):
        thr, tol = m.abort_threshold, m.tolerance
        split = arm_designs(dn, planned) if s.levers.arm_designs else dn
        if m.type == "latency":
            assert cum is not None
            lo, _, hi = latency.ratio_interval(cum[0], cum[1], m.quantile, a, b, grid, dn)
            out.append(Bounded(lo, hi, thr, tol, data))
        elif m.type == "error-rate" and grouping is not None:
            assert arrival is not None
            out.append(_Bets(arrival[act], a, b, thr, tol, grouping, s.levers))
        elif m.type == "error-rate" and s.mode == "canary":
            e, k = err[:, act], n[:, act]
            if s.levers.conditional_errors and thr == 0.0:
                design = rates.conditional_design(tol, share, DESIGN_FACTOR)
                worse = (rates.ratio_lower(e[0], e[1], share, a, design) > 1.0) & data
                # the promote side as before; thr = 1 rules the difference's abort side out
                upper = Difference(e[0], k[0], e[1], k[1], a, b, 1.0, tol, split, data)
                out.append(_Either(worse, upper))
            else:
                out.append(Difference(e[0], k[0], e[1], k[1], a, b, thr, tol, split, data))
        elif (
            m.type == "error-rate" and s.levers.paired_errors and s.levers.shadow_bets and thr == 0
        ):
            assert pair_levels is not None
            out.append(_Bets(pair_levels[act], a, b, thr, tol, bets.PAIRS, s.levers, copies=True))
        elif m.type == "error-rate" and s.levers.paired_errors and thr == 0.0:
            lo, _, hi = rates.paired_error_bounds(
                err[2, act], err[3, act], n[1, act], a, b, dn, rates.paired_design(tol)
            )
            out.append(Bounded(lo, hi, thr, tol, data))
        elif m.type == "error-rate":
            lo, _, hi = rates.rate_difference(
                err[0, act], n[0, act], err[1, act], n[1, act], a, b, True, dn, True
            )
            out.append(Bounded(lo, hi, thr, tol, data))
        elif s.mode == "shadow":
            d, k = differ[:, act], pairs[act]
            if s.control:  # the candidate's disagreement above the control's (the floor)
                lo, _, hi = rates.rate_difference(d[0], k, d[1], k, a, b, True, dn, True)
            else:
                lo, _, hi = rates.rate_interval(d[1], k, a, b, True, dn)
            out.append(Bounded(lo, hi, thr, tol, k > 0))
        elif labels is not None:  # canary TV by bets on label pairs (reps, K, K)
            out.append(_TvBets(labels[act], a, b, thr, tol))
        else:
            q, p = cats[0, act].astype(np.float64), cats[1, act].astype(np.float64)
            sets = rates._subsets(q.shape[-1])
            events = sets.shape[0]
            up = b if rates.UPPER_PER_EVENT else b / events
            nq, np_ = q.sum(axis=-1, keepdims=True), p.sum(axis=-1, keepdims=True)
            has = (nq[:, 0] > 0) & (np_[:, 0] > 0)
            out.append(
                Difference(
                    q @ sets.T, nq, p @ sets.T, np_, a / events, up, thr, tol, split, has[:, None]
                )
            )
    return out
