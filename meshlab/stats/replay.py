"""Replay a samples file with a look every ``every`` rows, fast: the verdict per look, vectorised.

``meshlab analyze --replay`` must give exactly what feeding :class:`Comparison` ``every`` rows at a
time and assessing after each batch gives: the first look with a decision, and the assessment
there. Done naively a look costs O(histogram bins) plus ~20 two-arm difference bounds (~1 ms
each), so 20,000 looks take minutes. Here looks are judged in blocks, vectorised over the looks:

* sufficient statistics per look are prefix sums over the rows (counts, errors, categories,
  completed pairs), computed once;
* a quantile's order statistic at each look comes from the histogram at the block's start plus
  the block's own rows, sorted by bin, with a per-look running count over them (no cumulative
  histogram per look);
* a look can decide only if some metric's lower bound passes its abort threshold or every
  metric's upper bound is below its tolerance. For the two-arm difference bounds (error rate, TV
  events) :func:`meshlab.stats.boundaries.difference_at_least` first proves cheaply, for most
  looks, that a bound is on the undecided side; the exact bound is computed only where it is not.

The verdict at a look depends only on the data up to it (the confidence sequences are not
intersected across looks here; :class:`Comparison` is built with ``intersect=False`` for a replay
to match), so the first deciding look is found without the others' exact intervals. The returned
assessment is then computed by an ordinary :class:`Comparison` fed the rows up to that look.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from meshlab.samples import Samples
from meshlab.spec.analysis import Metric
from meshlab.stats import latency, rates
from meshlab.stats.boundaries import difference_at_least, difference_upper
from meshlab.stats.comparison import Comparison, _Categories, predictions_differ
from meshlab.stats.results import Assessment

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
_CELLS = 4_000_000  # block size: looks^2 x rows-per-look stays under this many counters


def replay(make: Callable[[], Comparison], data: Samples, every: int) -> Assessment:
    """The assessment at the first deciding look (every ``every`` rows), or at the last look."""
    probe = make()
    # a shadow with a control pairs three arms for divergence: the stepwise loop handles it
    three_arm = probe.control and probe.mode == "shadow" and bool(probe._divergence)
    if not probe.sequential or probe.intersect or len(data) == 0 or three_arm:
        return _stepwise(probe, data, every)
    looks = _Looks(probe, data, every)
    block = max(1, min(512, int(math.sqrt(_CELLS / every))))
    for j0 in range(0, looks.count, block):
        decided = looks.decided(j0, min(j0 + block, looks.count))
        if decided.any():
            end = int(looks.ends[j0 + int(np.argmax(decided))])
            break
    else:
        end = len(data)
    final = make()
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


class _Looks:
    """Per-look sufficient statistics of a whole file and the verdict test per block of looks."""

    def __init__(self, c: Comparison, data: Samples, every: int) -> None:
        self.c = c
        n = len(data)
        self.ends = np.minimum(np.arange(every, n + every, every), n)
        self.count = int(self.ends.size)
        slot = c._slots(data)  # the rows Comparison compares (reference 0, candidate 1)
        use = slot >= 0
        self.rows = np.flatnonzero(use)  # used rows, by position in the file
        self.arm = slot[use]
        self.look_of = np.searchsorted(self.ends, self.rows, side="right")  # look of each row
        self.bins = c.grid.index(data.latency_ms[use])
        self.n = self._prefix(np.eye(2, dtype=np.int64)[self.arm])  # (looks, 2)
        err = data.errors(c.analysis.expected_statuses)[use]
        self.err = self._prefix(np.eye(2, dtype=np.int64)[self.arm] * err[:, None])
        self.divergence: dict[str, Any] = {}
        for m in c.analysis.metrics:
            if m.type != "prediction-divergence":
                continue
            if c.mode == "canary":
                self.divergence[m.name] = self._categories(m, data, use)
            else:
                self.divergence[m.name] = self._pairs(m, data, use)
        self.hist = np.zeros((2, c.grid.size), dtype=np.int64)  # rows before the current block
        self._finders: dict[int, Callable[[IntArray], IntArray]] = {}

    def _prefix(self, per_row: npt.NDArray[np.int64]) -> IntArray:
        """Cumulative sums of per-row values at each look's end: (looks, ...)."""
        per_look = np.zeros((self.count, *per_row.shape[1:]), dtype=np.int64)
        np.add.at(per_look, self.look_of, per_row)
        return np.asarray(np.cumsum(per_look, axis=0), dtype=np.int64)

    def _categories(self, m: Metric, data: Samples, use: BoolArray) -> tuple[IntArray, IntArray]:
        """Per-look category counts (looks, 2, K) in first-seen order, and K seen per look."""
        preds = data.prediction[use]
        keep = np.array([p is not None for p in preds], dtype=bool)
        codes = _Categories(m.epsilon)._codes(preds[keep].tolist())
        k = int(codes.max()) + 1 if codes.size else 0
        first = np.full(k, np.iinfo(np.int64).max)
        np.minimum.at(first, codes, np.arange(codes.size))
        rank = np.empty(k, dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(k)
        codes = rank[codes]
        onehot = np.zeros((codes.size, 2, k), dtype=np.int64)
        onehot[np.arange(codes.size), self.arm[keep], codes] = 1
        full = np.zeros((self.arm.size, 2, k), dtype=np.int64)
        full[keep] = onehot
        counts = self._prefix(full)
        seen = np.zeros(self.arm.size, dtype=np.int64)
        seen[np.flatnonzero(keep)[np.sort(first)]] = 1
        return counts, self._prefix(seen)

    def _pairs(self, m: Metric, data: Samples, use: BoolArray) -> tuple[IntArray, IntArray]:
        """Per-look (pairs, differ) of the shadow pairing, exactly as ``_Pairs`` pairs rows."""
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
        return self._prefix(done), self._prefix(differ)

    def decided(self, j0: int, j1: int) -> BoolArray:
        """Whether each look in [j0, j1) reaches a decision; advances the block histogram.

        First every metric gives, per look, "cannot fail" and "cannot pass" (exact for the cheap
        metrics, certificates for the difference bounds). A look where no metric can fail and
        some metric cannot pass is undecided; only the other looks get exact bounds.
        """
        c = self.c
        a, b = c.alpha_share, c.analysis.beta
        n = self.n[j0:j1]
        empty = (n[:, 0] == 0) | (n[:, 1] == 0)
        block_rows = (self.look_of >= j0) & (self.look_of < j1)
        self._finders = {}
        tests: list[Test] = []
        for m in c.analysis.metrics:
            thr, tol, design = m_threshold(m), float(m.tolerance), c.design(m)
            if m.type == "latency":
                lo, hi = self._latency(m, j0, j1, block_rows, a, b, design)
                tests.append(Exact((lo > thr) & ~empty, (hi < tol) & ~empty))
            elif m.type == "error-rate" and c.mode == "canary":
                e = self.err[j0:j1]
                tests.append(
                    Difference(e[:, 0], n[:, 0], e[:, 1], n[:, 1], a, b, thr, tol, design, ~empty)
                )
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
                tests.append(self._tv(m, j0, j1, a, b, thr, tol, design))
        np.add.at(self.hist, (self.arm[block_rows], self.bins[block_rows]), 1)
        abort, promote = judge(tests, j1 - j0)
        return np.asarray(abort | promote, dtype=np.bool_)

    def _latency(
        self, m: Metric, j0: int, j1: int, block_rows: BoolArray, a: float, b: float, design: float
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        q = float(m.quantile if m.quantile is not None else 0.5)
        grid = self.c.grid
        bounds = []
        for arm, levels in ((0, (b / 2, a / 2)), (1, (a / 2, b / 2))):
            if arm not in self._finders:
                mine = block_rows & (self.arm == arm)
                self._finders[arm] = _rank_finder(
                    np.cumsum(self.hist[arm]), self.bins[mine], self.look_of[mine] - j0, j1 - j0
                )
            kth = self._finders[arm]
            n = self.n[j0:j1, arm]
            bounds.append(latency.quantile_bounds_by_rank(n, kth, q, *levels, grid, design))
        lo, _, hi = latency.ratio_from_bounds(bounds[0], bounds[1])
        return lo, hi

    def _tv(
        self, m: Metric, j0: int, j1: int, a: float, b: float, thr: float, tol: float, design: float
    ) -> Test:
        counts, seen = self.divergence[m.name]
        counts, seen = counts[j0:j1].astype(np.float64), seen[j0:j1]
        parts: list[tuple[IntArray, Test]] = []
        for k in np.unique(seen):
            at = np.flatnonzero(seen == k)
            q, p = counts[at, 0, :k], counts[at, 1, :k]
            nq, np_ = q.sum(axis=-1), p.sum(axis=-1)
            data = (nq > 0) & (np_ > 0)
            if 2 <= k <= rates.MAX_SET_CATEGORIES:
                sets = rates._subsets(int(k))
                pa, qa = p @ sets.T, q @ sets.T
                events = sets.shape[0]
                up = b if rates.UPPER_PER_EVENT else b / events
                test: Test = Difference(
                    qa,
                    nq[:, None],
                    pa,
                    np_[:, None],
                    a / events,
                    up,
                    thr,
                    tol,
                    design,
                    data[:, None],
                )
            else:
                lo_, _, hi_ = rates.tv_interval(q, p, a, b, True, design)
                test = Exact((lo_ > thr) & data, (hi_ < tol) & data)
            parts.append((at, test))
        return _Parts(j1 - j0, parts)


class Test:
    """One metric's verdict test over a block of looks: cheap rule-outs, exact on demand."""

    no_fail: BoolArray  # certainly no abort from this metric at the look
    no_pass: BoolArray  # certainly not within tolerance at the look

    def exact(self, at: IntArray) -> tuple[BoolArray, BoolArray]:
        """(fail, pass) at the looks ``at``."""
        raise NotImplementedError


class Exact(Test):
    def __init__(self, fail: BoolArray, ok: BoolArray) -> None:
        self.fail, self.ok = fail, ok
        self.no_fail, self.no_pass = ~fail, ~ok

    def exact(self, at: IntArray) -> tuple[BoolArray, BoolArray]:
        return self.fail[at], self.ok[at]


class _Parts(Test):
    """A test assembled from tests over disjoint subsets of the looks (TV by label count)."""

    def __init__(self, size: int, parts: list[tuple[IntArray, Test]]) -> None:
        self.parts = parts
        self.no_fail = np.ones(size, dtype=bool)
        self.no_pass = np.ones(size, dtype=bool)
        self.where = np.zeros(size, dtype=np.int64)
        self.offset = np.zeros(size, dtype=np.int64)
        for i, (at, t) in enumerate(parts):
            self.no_fail[at], self.no_pass[at] = t.no_fail, t.no_pass
            self.where[at], self.offset[at] = i, np.arange(at.size)

    def exact(self, at: IntArray) -> tuple[BoolArray, BoolArray]:
        fail = np.zeros(at.size, dtype=bool)
        ok = np.zeros(at.size, dtype=bool)
        for i, (_, t) in enumerate(self.parts):
            sel = self.where[at] == i
            if sel.any():
                fail[sel], ok[sel] = t.exact(self.offset[at][sel])
        return fail, ok


class Difference(Test):
    """``lower = -du(base over cand) > thr`` and ``upper = du(cand over base) < tol`` per look.

    Two-dimensional inputs hold TV events on the last axis: fail if any event fails, pass if all
    pass, after clipping to [0, 1] as :func:`meshlab.stats.rates.tv_interval` does.
    """

    def __init__(
        self,
        s_base: npt.NDArray[Any],
        n_base: npt.NDArray[Any],
        s_cand: npt.NDArray[Any],
        n_cand: npt.NDArray[Any],
        a: float,
        b: float,
        thr: float,
        tol: float,
        design: float,
        has_data: BoolArray,
    ) -> None:
        shape = np.broadcast_shapes(s_base.shape, n_base.shape, s_cand.shape, n_cand.shape)
        self.sb, self.nb, self.sc, self.nc = (
            np.broadcast_to(x, shape).astype(np.float64) for x in (s_base, n_base, s_cand, n_cand)
        )
        self.events = len(shape) == 2
        self.a, self.b, self.thr, self.tol, self.design = a, b, thr, tol, design
        self.has_data: BoolArray = np.asarray(
            np.broadcast_to(has_data, shape).reshape(shape[0], -1).all(axis=-1), dtype=np.bool_
        )
        # fail <=> du(base, cand) < -thr for some event; "at least -thr" rules an event out
        self.fail_out = difference_at_least(self.sb, self.nb, self.sc, self.nc, a, -thr, design)
        self.pass_out = difference_at_least(self.sc, self.nc, self.sb, self.nb, b, tol, design)
        if self.events:
            self.no_fail = self.fail_out.all(axis=-1) | ~self.has_data
            self.no_pass = self.pass_out.any(axis=-1) | ~self.has_data
        else:
            self.no_fail, self.no_pass = (
                self.fail_out | ~self.has_data,
                self.pass_out | ~self.has_data,
            )

    def exact(self, at: IntArray) -> tuple[BoolArray, BoolArray]:
        sb, nb, sc, nc = self.sb[at], self.nb[at], self.sc[at], self.nc[at]
        low = np.full(sb.shape, -np.inf)
        need = ~self.fail_out[at]
        if need.any():
            low[need] = -difference_upper(
                sb[need], nb[need], sc[need], nc[need], self.a, self.design
            )
        high = np.full(sb.shape, np.inf)
        need = ~self.pass_out[at]
        if self.events:  # an event shown >= tol already rules the look's pass out
            need &= ~self.pass_out[at].any(axis=-1, keepdims=True)
        if need.any():
            high[need] = difference_upper(
                sc[need], nc[need], sb[need], nb[need], self.b, self.design
            )
        if self.events:
            lower = np.clip(low, 0.0, 1.0).max(axis=-1)
            upper = np.clip(high, 0.0, 1.0).max(axis=-1)
        else:
            lower, upper = low, high
        data = self.has_data[at]
        return (lower > self.thr) & data, (upper < self.tol) & data


def m_threshold(m: Metric) -> float:
    """The metric's abort threshold (as in :class:`meshlab.stats.results.MetricResult`)."""
    return float(m.tolerance) if m.abort_on == "beyond-tolerance" else 0.0


def judge(tests: list[Test], size: int) -> tuple[BoolArray, BoolArray]:
    """(abort, promote) per look from the metrics' tests, as :func:`meshlab.stats.decide` rules.

    A look where no metric can fail and some metric cannot pass is inconclusive without exact
    bounds; only the other looks ask the tests for them.
    """
    settled = np.all([t.no_fail for t in tests], axis=0)
    settled &= np.any([t.no_pass for t in tests], axis=0)
    abort = np.zeros(size, dtype=bool)
    promote = np.zeros(size, dtype=bool)
    at = np.flatnonzero(~settled)
    if at.size:
        exact = [t.exact(at) for t in tests]
        abort[at] = np.any([f for f, _ in exact], axis=0)
        promote[at] = ~abort[at] & np.all([o for _, o in exact], axis=0)
    return abort, promote


def _rank_finder(
    cum0: IntArray, new_bins: IntArray, new_look: IntArray, looks: int
) -> Callable[[IntArray], IntArray]:
    """``kth_bin`` per look of a block: the histogram before it plus its own rows up to the look.

    Row counts below bin ``x`` at look ``l``: ``cum0[x] + cnt[l, #new rows with bin <= x]``, with
    ``cnt[l, r]`` the number of the first ``r`` bin-sorted new rows that arrived by look ``l``.
    """
    order = np.argsort(new_bins, kind="stable")
    sorted_bins, sorted_look = new_bins[order], new_look[order]
    cnt = np.zeros((looks, sorted_bins.size + 1), dtype=np.int64)
    if sorted_bins.size:
        arrived = sorted_look[None, :] <= np.arange(looks)[:, None]
        cnt[:, 1:] = np.cumsum(arrived, axis=1)
    size = cum0.size
    steps = math.ceil(math.log2(size + 1)) + 1

    def kth_bin(k: IntArray) -> IntArray:
        k = np.asarray(k, dtype=np.int64)
        row = np.arange(looks)
        lo, hi = np.zeros(looks, dtype=np.int64), np.full(looks, size, dtype=np.int64)
        for _ in range(steps):  # first bin x with count(x) >= k; ``size`` if none
            mid = (lo + hi) // 2
            safe = np.minimum(mid, size - 1)
            count = cum0[safe] + cnt[row, np.searchsorted(sorted_bins, safe, side="right")]
            reached = (count >= k) | (mid >= size)
            hi = np.where(reached, mid, hi)
            lo = np.where(reached, lo, mid + 1)
        return hi

    return kth_bin
