"""Replay a samples file with a look every ``every`` rows, fast: the verdict per look, vectorised.

``meshlab analyze --replay`` must give exactly what feeding :class:`Comparison` ``every`` rows at a
time and assessing after each batch gives: the first look with a decision, and the assessment
there. Done naively a look costs O(histogram bins) (~23,000) plus ~20 two-arm difference bounds
(~1 ms each), so 20,000 looks take minutes. Here looks are judged in blocks, vectorised over the
looks, and no look costs O(bins):

* sufficient statistics per look are prefix sums over the rows (counts, errors, categories,
  completed pairs), computed once with one ``bincount`` each;
* a quantile's order statistics at each look come from a wavelet matrix over the arm's bins
  (:class:`meshlab.stats.ranks.PrefixRanks`): O(log bins) a look, exact;
* a look can decide only if some metric's lower bound passes its abort threshold or every
  metric's upper bound is below its tolerance; the two-arm difference bounds (error rate, TV
  events) are first ruled out by certificates, and computed exactly only where they are not
  (:mod:`meshlab.stats.replay_verdicts`).

The verdict at a look depends only on the data up to it (the confidence sequences are not
intersected across looks here; :class:`Comparison` is built with ``intersect=False`` for a replay
to match), so the first deciding look is found without the others' exact intervals. The returned
assessment is then computed by an ordinary :class:`Comparison` fed the rows up to that look.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from meshlab.samples import Samples
from meshlab.spec.analysis import Metric
from meshlab.stats import bets, latency, rates, tolbets
from meshlab.stats.arrival import batch_order, groups_at
from meshlab.stats.boundaries import ArmDesign
from meshlab.stats.comparison import Comparison
from meshlab.stats.pairing import ErrorPairs, pair_levels
from meshlab.stats.predictions import Categories, predictions_differ
from meshlab.stats.ranks import PrefixRanks
from meshlab.stats.replay_verdicts import (
    Difference,
    Exact,
    Parts,
    Test,
    judge,
    m_threshold,
)
from meshlab.stats.results import Assessment
from meshlab.stats.standing import judge_latched

# The verdict tests are re-exported: the simulation (meshlab.stats.simulate) judges with them too.
__all__ = ["Difference", "Exact", "Looks", "Test", "judge", "replay"]

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
BLOCK = 256  # looks judged together: large enough to vectorise, small enough to stop early


def replay(make: Callable[[], Comparison], data: Samples, every: int) -> Assessment:
    """The assessment at the first deciding look (every ``every`` rows), or at the last look."""
    probe = make()
    # a shadow with a control pairs three arms for divergence: the stepwise loop handles it
    three_arm = probe.control and probe.mode == "shadow" and bool(probe._divergence)
    if not probe.sequential or probe.intersect or len(data) == 0 or three_arm:
        return _stepwise(probe, data, every)
    looks = Looks(probe, data, every)
    last = looks.count - 1
    for j0 in range(0, looks.count, BLOCK):
        abort, promote = looks.verdicts(j0, min(j0 + BLOCK, looks.count))
        decided = abort | promote
        if decided.any():
            last = j0 + int(np.argmax(decided))
            break
    end = int(looks.ends[last]) if looks.count else len(data)
    final = make()
    final.record_passes(looks.passes(last))
    if any(final.bets_on(m) or final.tv_bets_on(m) for m in final.analysis.metrics):
        # the bets group each batch's rows in their own order: feed the looks' batches
        for start in range(0, end, every):
            final.update(data.take(slice(start, min(start + every, end))))
    else:
        final.update(data.take(slice(0, end)))
    return final.assess()


def _stepwise(comparison: Comparison, data: Samples, every: int) -> Assessment:
    """The plain loop: feed ``every`` rows, assess, stop at the first decision."""
    assessment = None
    for start in range(0, max(len(data), 1), every):
        comparison.update(data.take(slice(start, start + every)))
        assessment = comparison.assess()
        if assessment.decision is not None:
            break
    assert assessment is not None
    return assessment


class Looks:
    """Per-look sufficient statistics of a whole file and the verdicts of any block of looks."""

    def __init__(self, c: Comparison, data: Samples, every: int) -> None:
        self.c = c
        # each metric's first passing look (-1: none yet), for passes that stand
        self.first_pass = np.full(len(c.analysis.metrics), -1, dtype=np.int64)
        self._next = 0  # the block judged next
        n = len(data)
        self.ends = np.minimum(np.arange(every, n + every, every), n)
        self.count = int(self.ends.size)
        slot = c._slots(data)  # the rows Comparison compares (reference 0, candidate 1)
        use = slot >= 0
        self.arm = slot[use]
        self.look_of = np.searchsorted(self.ends, np.flatnonzero(use), side="right")
        err = data.errors(c.analysis.expected_statuses)[use]
        counts = self._prefix(self.look_of, self.arm + 2 * err, 4)  # (looks, arm x error)
        self.n = counts[:, :2] + counts[:, 2:]
        self.err = counts[:, 2:]
        # canary errors by bets: each group's level and the groups per look, each look's rows
        # grouped in the order Comparison.update groups a batch
        self.arrival: tuple[IntArray, IntArray] | None = None  # group levels, groups per look
        paired = any(m.type == "error-rate" and c.pairs_errors(m) for m in c.analysis.metrics)
        betting = paired or any(c.bets_on(m) or c.tv_bets_on(m) for m in c.analysis.metrics)
        ids, stamps = data.request_id[use], data.timestamp[use]
        self.order = batch_order(stamps, ids, err, self.look_of) if betting else None
        if c.grouping is not None and any(c.bets_on(m) for m in c.analysis.metrics):
            assert self.order is not None
            rows, n_ref, n_cand = self.arm[self.order], self.n[:, 0], self.n[:, 1]
            self.arrival = groups_at(rows, err[self.order], n_ref, n_cand, c.grouping)
        self.error_pairs: IntArray | None = None  # (looks, pairing.FIELDS)
        self.pair_levels: IntArray | None = None  # each complete pair's level, in order
        if paired:  # each look's rows paired in the order Comparison.update pairs a batch
            assert self.order is not None
            o = self.order
            steps = ErrorPairs().add(self.arm[o], ids[o], err[o])
            flat = np.zeros((self.count, steps.shape[1]), dtype=np.int64)
            np.add.at(flat, self.look_of[o], steps)
            self.error_pairs = np.cumsum(flat, axis=0)
            self.pair_levels = pair_levels(steps)
        self.divergence: dict[str, Any] = {}
        self.label_joint: dict[str, IntArray] = {}  # canary TV by bets: (looks, K, K) pairs
        for m in c.analysis.metrics:
            if m.type != "prediction-divergence":
                continue
            if c.mode == "canary":
                self.divergence[m.name] = self._categories(m, data, use)
                if c.tv_bets_on(m):
                    self.label_joint[m.name] = self._label_joint(self.divergence[m.name][2])
            else:
                self.divergence[m.name] = self._pairs(m, data, use)
        self._bins: IntArray | None = None
        if any(m.type == "latency" for m in c.analysis.metrics):
            self._bins = c.grid.index(data.latency_ms[use])
        self._ranks: dict[int, PrefixRanks] = {}
        self._bets: dict[str, tuple[BoolArray, BoolArray]] = {}  # error rates' verdicts per look

    def _bet_verdicts(
        self, m: Metric, thresholds: tuple[float, float]
    ) -> tuple[BoolArray, BoolArray]:
        """An error rate's (fails, passes) at every look by the bets aimed at the tolerance
        (:func:`meshlab.stats.tolbets.sequence_verdicts`), computed once per metric."""
        if m.name not in self._bets:
            c, tol = self.c, float(m.tolerance)
            a, b = c.alpha_share, c.analysis.beta
            if c.bets_on(m):  # canary: groups in arrival order
                assert self.arrival is not None and c.grouping is not None
                levels, groups = self.arrival
                self._bets[m.name] = tolbets.sequence_verdicts(
                    levels, groups, thresholds, a, b, tol, c.grouping
                )
            else:  # shadow: the copies of each request
                assert self.error_pairs is not None and self.pair_levels is not None
                pairs, unmatched = self.error_pairs[:, 0], self.error_pairs[:, 3]
                self._bets[m.name] = tolbets.sequence_verdicts(
                    self.pair_levels, pairs, thresholds, a, b, tol, unmatched=unmatched, copies=True
                )
        return self._bets[m.name]

    def _prefix(self, look: IntArray, cell: IntArray, cells: int) -> IntArray:
        """Cumulative counts of rows per cell at each look's end: (looks, cells)."""
        flat = np.bincount(look * cells + cell, minlength=self.count * cells)
        return np.asarray(np.cumsum(flat.reshape(self.count, cells), axis=0), dtype=np.int64)

    def _categories(
        self, m: Metric, data: Samples, use: BoolArray
    ) -> tuple[IntArray, IntArray, IntArray]:
        """Per-look category counts (looks, 2, K) in first-seen order, K seen per look, and each
        compared row's category in that order (-1: no prediction)."""
        preds = data.prediction[use]
        keep = np.fromiter((p is not None for p in preds), dtype=bool, count=preds.size)
        codes = Categories(m.epsilon)._codes(preds[keep].tolist())
        k = int(codes.max()) + 1 if codes.size else 0
        first = np.full(k, np.iinfo(np.int64).max)
        np.minimum.at(first, codes, np.arange(codes.size))
        rank = np.empty(k, dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(k)
        codes = rank[codes]
        look = self.look_of[keep]
        counts = self._prefix(look, self.arm[keep] * k + codes, 2 * k).reshape(self.count, 2, k)
        seen = self._prefix(look[np.sort(first)], np.zeros(k, dtype=np.int64), 1)[:, 0]
        row_codes = np.full(keep.size, -1, dtype=np.int64)
        row_codes[keep] = codes
        return counts, seen, row_codes

    def _label_joint(self, row_codes: IntArray) -> IntArray:
        """Per-look counts (looks, K, K) of label pairs (candidate, reference), paired in the
        order ``Comparison.update`` pairs each batch's labelled rows (``predictions.LabelPairs``),
        over the first :data:`rates.MAX_SET_CATEGORIES` labels only: a pair with a later label
        forms at a look that has seen more labels than the bets judge."""
        assert self.order is not None
        codes, arm, look = row_codes[self.order], self.arm[self.order], self.look_of[self.order]
        k = min(int(codes.max()) + 1 if codes.size else 0, rates.MAX_SET_CATEGORIES)
        cand, ref = (codes >= 0) & (arm == 1), (codes >= 0) & (arm == 0)
        m = min(int(cand.sum()), int(ref.sum()))
        c, r = codes[cand][:m], codes[ref][:m]
        at = np.maximum(look[cand][:m], look[ref][:m])
        inside = (c < k) & (r < k)
        flat = (at * k + c) * k + r
        steps = np.bincount(flat[inside], minlength=self.count * k * k)
        return np.asarray(np.cumsum(steps.reshape(self.count, k, k), axis=0), dtype=np.int64)

    def _pairs(self, m: Metric, data: Samples, use: BoolArray) -> tuple[IntArray, IntArray]:
        """Per-look (pairs, differ) of the shadow pairing, exactly as ``predictions.Pairs`` pairs rows."""
        waiting: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
        done = np.zeros(self.arm.size, dtype=np.int64)
        differ = np.zeros(self.arm.size, dtype=np.int64)
        sides, ids = self.arm.tolist(), data.request_id[use].tolist()
        for i, (s, rid, pred) in enumerate(
            zip(sides, ids, data.prediction[use].tolist(), strict=True)
        ):
            other = waiting[1 - s]
            if rid in other:
                mate = other.pop(rid)
                if pred is not None and mate is not None:
                    done[i] = 1
                    differ[i] = predictions_differ(pred, mate, m.epsilon)
            else:
                waiting[s][rid] = pred
        stats = self._prefix(self.look_of, done + 2 * differ, 4)  # differ implies done
        return stats[:, 1] + stats[:, 3], stats[:, 3]

    def passes(self, last: int) -> dict[str, int]:
        """The requests seen at each metric's first passing look, up to look ``last``."""
        names = [m.name for m in self.c.analysis.metrics]
        return {
            name: int(self.ends[j])
            for name, j in zip(names, self.first_pass, strict=True)
            if 0 <= j <= last
        }

    def verdicts(self, j0: int, j1: int) -> tuple[BoolArray, BoolArray]:
        """(abort, promote) at each look in [j0, j1), as assessing there would rule. With
        passes that stand (``Comparison(latch=True)``) blocks must come in order from look 0:
        each remembers which metrics passed in the blocks before it."""
        c = self.c
        a, b = c.alpha_share, c.analysis.beta
        n = self.n[j0:j1]
        empty = (n[:, 0] == 0) | (n[:, 1] == 0)
        tests: list[Test] = []
        for m in c.analysis.metrics:
            thr, tol, design = m_threshold(m), float(m.tolerance), c.design(m)
            if m.type == "latency":
                lo, hi = self._latency(m, j0, j1, a, b, design)
                tests.append(Exact((lo > thr) & ~empty, (hi < tol) & ~empty))
            elif c.bets_on(m):
                fails, passes = self._bet_verdicts(m, (thr, tol))
                tests.append(Exact(fails[j0:j1], passes[j0:j1]))
            elif m.type == "error-rate" and c.mode == "canary":
                e = self.err[j0:j1]
                split = c.arm_design(m)
                tests.append(
                    Difference(e[:, 0], n[:, 0], e[:, 1], n[:, 1], a, b, thr, tol, split, ~empty)
                )
            elif m.type == "error-rate" and c.pairs_errors(m):
                fails, passes = self._bet_verdicts(m, (thr, tol))
                tests.append(Exact(fails[j0:j1], passes[j0:j1]))
            elif m.type == "error-rate":
                e = self.err[j0:j1]
                lo_, _, hi_ = rates.rate_difference(
                    e[:, 0], n[:, 0], e[:, 1], n[:, 1], a, b, True, design, True
                )
                tests.append(Exact((lo_ > thr) & ~empty, (hi_ < tol) & ~empty))
            elif c.mode == "shadow":
                pairs, differ = (x[j0:j1] for x in self.divergence[m.name])
                lo_, _, hi_ = rates.rate_interval(differ, pairs, a, b, True, design)
                tests.append(Exact((lo_ > thr) & (pairs > 0), (hi_ < tol) & (pairs > 0)))
            else:
                tests.append(self._tv(m, j0, j1, a, b, thr, tol, c.arm_design(m)))
        if not (c.sequential and c.latch):
            return judge(tests, j1 - j0)
        assert j0 == self._next, "with passes that stand, blocks come in order"
        abort, promote, passed = judge_latched(tests, j1 - j0, self.first_pass >= 0)
        for i in np.flatnonzero((self.first_pass < 0) & passed[:, -1]):
            self.first_pass[i] = j0 + int(np.argmax(passed[i]))
        self._next = j1
        return abort, promote

    def _rank(self, arm: int, rows: int) -> PrefixRanks:
        """The wavelet matrix of the arm's bins over at least its first ``rows`` rows.

        Built over a prefix that grows 4x when a look needs more, so a replay that stops early
        does not index the whole file, and all builds cost at most 4/3 of one over the file.
        """
        have = self._ranks.get(arm)
        if have is None or have.n < rows:
            assert self._bins is not None
            mine = self._bins[self.arm == arm]
            size = min(mine.size, max(rows, 4 * (have.n if have else 0), 4096))
            have = self._ranks[arm] = PrefixRanks(mine[:size], self.c.grid.size)
        return have

    def _latency(
        self, m: Metric, j0: int, j1: int, a: float, b: float, design: float
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        q = float(m.quantile if m.quantile is not None else 0.5)
        bounds = []
        for arm, levels in ((0, (b / 2, a / 2)), (1, (a / 2, b / 2))):
            n = self.n[j0:j1, arm]
            kth = _kth_at(self._rank(arm, int(n[-1])), n)
            bounds.append(latency.quantile_bounds_by_rank(n, kth, q, *levels, self.c.grid, design))
        lo, _, hi = latency.ratio_from_bounds(bounds[0], bounds[1])
        return lo, hi

    def _tv(
        self,
        m: Metric,
        j0: int,
        j1: int,
        a: float,
        b: float,
        thr: float,
        tol: float,
        design: ArmDesign,
    ) -> Test:
        counts, seen, _ = self.divergence[m.name]
        counts, seen = counts[j0:j1].astype(np.float64), seen[j0:j1]
        joint = self.label_joint.get(m.name)
        parts: list[tuple[IntArray, Test]] = []
        for k in np.unique(seen):
            at = np.flatnonzero(seen == k)
            q, p = counts[at, 0, :k], counts[at, 1, :k]
            nq, np_ = q.sum(axis=-1), p.sum(axis=-1)
            data = (nq > 0) & (np_ > 0)
            if joint is not None and 2 <= k <= rates.MAX_SET_CATEGORIES:
                pairs = joint[j0:j1][at, :k, :k]
                sets, scale = rates._subsets(int(k)), tol / bets.TV_VARIANCE
                test: Test = Exact(*bets.tv_verdicts(pairs, sets, (thr, tol), a, b, scale))
            elif 2 <= k <= rates.MAX_SET_CATEGORIES:
                sets = rates._subsets(int(k))
                events = sets.shape[0]
                up = b if rates.UPPER_PER_EVENT else b / events
                test = Difference(
                    q @ sets.T, nq[:, None], p @ sets.T, np_[:, None],
                    a / events, up, thr, tol, design, data[:, None],
                )  # fmt: skip
            else:
                lo_, _, hi_ = rates.tv_interval(q, p, a, b, True, design)
                test = Exact((lo_ > thr) & data, (hi_ < tol) & data)
            parts.append((at, test))
        return Parts(j1 - j0, parts)


def _kth_at(ranks: PrefixRanks, n: IntArray) -> Callable[[IntArray], IntArray]:
    """``kth_bin`` for :func:`meshlab.stats.latency.quantile_bounds_by_rank` at looks of sizes n."""

    def kth_bin(k: IntArray) -> IntArray:
        return ranks.kth(n, k)

    return kth_bin
