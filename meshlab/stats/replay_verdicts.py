"""The verdict of a block of replay looks: cheap rule-outs first, exact bounds only where needed.

:func:`judge` rules as :func:`meshlab.stats.decide` does (abort if some metric's lower bound passes
its abort threshold, promote if every metric's upper bound is below its tolerance), per look. A
look where no metric can fail and some metric cannot pass is inconclusive without its exact
interval; only the other looks get exact bounds. Each metric is a :class:`Test`: exact for the
cheap bounds (latency, paired rates), lazy for the two-arm difference bounds
(:func:`meshlab.stats.boundaries.difference_upper`, ~700 mixture evaluations each), which are
ruled out per look and per event by two certificates, the cheapest first:

1. :func:`quick_at_least`: no posterior beta function. A mixture likelihood ratio never exceeds
   the maximum likelihood ratio, nor the prior's peak density times the likelihood's integral
   (:func:`log_mixture_bound`), so a pair of grid cells whose bounds pass the test is feasible
   in ``difference_upper`` too;
2. :func:`meshlab.stats.boundaries.difference_at_least`: the mixtures themselves at the cells.

Either certificate only ever says "the bound reaches the threshold" when it does, so the looks'
verdicts are exactly those of assessing each look in full; a look where neither proves it gets
the exact bound. :mod:`meshlab.stats.standing` rules the same looks when a sequential pass
stands.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special

from meshlab.spec.analysis import Metric
from meshlab.stats.boundaries import (
    _DENSE,
    _EPS,
    _GUARD,
    GRID_POINTS,
    ArmDesign,
    arm_priors,
    difference_at_least,
    difference_upper,
    per_arm,
)

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


def m_threshold(m: Metric) -> float:
    """The metric's abort threshold (as in :class:`meshlab.stats.results.MetricResult`)."""
    return float(m.tolerance) if m.abort_on == "beyond-tolerance" else 0.0


class Test:
    """One metric's verdict over a block of looks. ``at`` are look indices within the block."""

    cheap = False  # exact tests are asked first: their answers spare the lazy ones work

    def no_fail(self, at: IntArray) -> BoolArray:
        """True where the metric certainly does not abort at the look."""
        raise NotImplementedError

    def no_pass(self, at: IntArray) -> BoolArray:
        """True where the metric is certainly not within its tolerance at the look."""
        raise NotImplementedError

    def exact(self, at: IntArray) -> tuple[BoolArray, BoolArray]:
        """(fail, pass) at the looks ``at``."""
        raise NotImplementedError


class Exact(Test):
    cheap = True

    def __init__(self, fail: BoolArray, ok: BoolArray) -> None:
        self.fail, self.ok = fail, ok

    def no_fail(self, at: IntArray) -> BoolArray:
        return np.asarray(~self.fail[at], dtype=np.bool_)

    def no_pass(self, at: IntArray) -> BoolArray:
        return np.asarray(~self.ok[at], dtype=np.bool_)

    def exact(self, at: IntArray) -> tuple[BoolArray, BoolArray]:
        return self.fail[at], self.ok[at]


class Parts(Test):
    """A test assembled from tests over disjoint subsets of the looks (TV by label count)."""

    def __init__(self, size: int, parts: list[tuple[IntArray, Test]]) -> None:
        self.parts = parts
        self.where = np.zeros(size, dtype=np.int64)
        self.offset = np.zeros(size, dtype=np.int64)
        for i, (at, _) in enumerate(parts):
            self.where[at], self.offset[at] = i, np.arange(at.size)
        self.cheap = all(t.cheap for _, t in parts)

    def _each(self, at: IntArray, ask: str) -> list[tuple[BoolArray, Any]]:
        out = []
        for i, (_, t) in enumerate(self.parts):
            sel = self.where[at] == i
            if sel.any():
                out.append((sel, getattr(t, ask)(self.offset[at][sel])))
        return out

    def no_fail(self, at: IntArray) -> BoolArray:
        result = np.ones(at.size, dtype=bool)
        for sel, value in self._each(at, "no_fail"):
            result[sel] = value
        return result

    def no_pass(self, at: IntArray) -> BoolArray:
        result = np.ones(at.size, dtype=bool)
        for sel, value in self._each(at, "no_pass"):
            result[sel] = value
        return result

    def exact(self, at: IntArray) -> tuple[BoolArray, BoolArray]:
        fail = np.zeros(at.size, dtype=bool)
        ok = np.zeros(at.size, dtype=bool)
        for sel, (f, o) in self._each(at, "exact"):
            fail[sel], ok[sel] = f, o
        return fail, ok


class Difference(Test):
    """``lower = -du(base over cand) > thr`` and ``upper = du(cand over base) < tol`` per look.

    Inputs of shape (looks,) or (looks, events) (TV events on the last axis: fail if any event
    fails, pass if all pass, after clipping to [0, 1] as
    :func:`meshlab.stats.rates.tv_interval` does). Certificates are computed per look and event
    on demand and kept: ``fail_out`` (``du(base over cand) >= -thr``: this event cannot fail)
    and ``pass_out`` (``du(cand over base) >= tol``: it cannot pass).
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
        design: ArmDesign,
        has_data: BoolArray,
    ) -> None:
        shape = np.broadcast_shapes(s_base.shape, n_base.shape, s_cand.shape, n_cand.shape)
        self.events = len(shape) == 2
        flat = (shape[0], shape[1] if self.events else 1)
        self.sb, self.nb, self.sc, self.nc = (
            np.broadcast_to(x, shape).astype(np.float64).reshape(flat)
            for x in (s_base, n_base, s_cand, n_cand)
        )
        self.a, self.b, self.thr, self.tol = a, b, thr, tol
        d_base, d_cand = per_arm(design)  # (base arm, candidate arm)
        self.fail_design, self.pass_design = (d_base, d_cand), (d_cand, d_base)  # (high, low)
        self.has_data: BoolArray = np.asarray(
            np.broadcast_to(has_data, shape).reshape(shape[0], -1).all(axis=-1), dtype=np.bool_
        )
        self._fail_out = np.zeros(flat, dtype=bool)
        self._pass_out = np.zeros(flat, dtype=bool)
        self._known_fail = np.zeros(flat, dtype=bool)
        self._known_pass = np.zeros(flat, dtype=bool)

    def _certify(self, looks: IntArray, event: int, fail_side: bool) -> BoolArray:
        """The certificate of one side for one event at ``looks``, computed once."""
        known, value = (
            (self._known_fail, self._fail_out) if fail_side else (self._known_pass, self._pass_out)
        )
        todo = looks[~known[looks, event]]
        if todo.size:
            base = (self.sb[todo, event], self.nb[todo, event])
            cand = (self.sc[todo, event], self.nc[todo, event])
            high, low = (base, cand) if fail_side else (cand, base)
            level, threshold = (self.a, -self.thr) if fail_side else (self.b, self.tol)
            design = self.fail_design if fail_side else self.pass_design
            shown = quick_at_least(*high, *low, level, threshold, design)
            rest = np.flatnonzero(~shown)
            if rest.size:
                shown[rest] = difference_at_least(
                    high[0][rest], high[1][rest], low[0][rest], low[1][rest], level, threshold,
                    design,
                )  # fmt: skip
            value[todo, event] = shown
            known[todo, event] = True
        return np.asarray(value[looks, event], dtype=np.bool_)

    def no_fail(self, at: IntArray) -> BoolArray:
        result = ~self.has_data[at]
        alive = np.flatnonzero(~result)  # every event must be shown unable to fail
        for event in range(self.sb.shape[1]):
            if alive.size == 0:
                break
            alive = alive[self._certify(at[alive], event, fail_side=True)]
        result[alive] = True
        return result

    def no_pass(self, at: IntArray) -> BoolArray:
        result = ~self.has_data[at]
        alive = np.flatnonzero(~result)  # one event shown unable to pass is enough
        for event in range(self.sb.shape[1]):
            if alive.size == 0:
                break
            shown = self._certify(at[alive], event, fail_side=False)
            result[alive[shown]] = True
            alive = alive[~shown]
        return result

    def exact(self, at: IntArray) -> tuple[BoolArray, BoolArray]:
        events = self.sb.shape[1]
        fail_out = np.stack([self._certify(at, e, True) for e in range(events)], axis=-1)
        pass_out = np.stack([self._certify(at, e, False) for e in range(events)], axis=-1)
        sb, nb, sc, nc = self.sb[at], self.nb[at], self.sc[at], self.nc[at]
        low = np.full(sb.shape, -np.inf)
        need = ~fail_out
        if need.any():
            low[need] = -difference_upper(
                sb[need], nb[need], sc[need], nc[need], self.a, self.fail_design
            )
        high = np.full(sb.shape, np.inf)
        need = ~pass_out & ~pass_out.any(axis=-1, keepdims=True)  # one event >= tol: no pass
        if need.any():
            high[need] = difference_upper(
                sc[need], nc[need], sb[need], nb[need], self.b, self.pass_design
            )
        if self.events:
            lower = np.clip(low, 0.0, 1.0).max(axis=-1)
            upper = np.clip(high, 0.0, 1.0).max(axis=-1)
        else:
            lower, upper = low[:, 0], high[:, 0]
        data = self.has_data[at]
        return (lower > self.thr) & data, (upper < self.tol) & data


def judge(tests: list[Test], size: int) -> tuple[BoolArray, BoolArray]:
    """(abort, promote) per look from the metrics' tests, as :func:`meshlab.stats.decide` rules.

    Exact tests are asked first; a lazy test is asked "can it fail" only at looks no earlier
    test could fail at, and "can it pass" only at looks no earlier test ruled a pass out at.
    """
    ordered = sorted(tests, key=lambda t: not t.cheap)
    no_fail = np.ones(size, dtype=bool)
    for t in ordered:
        at = np.flatnonzero(no_fail)
        if at.size == 0:
            break
        no_fail[at] = t.no_fail(at)
    no_pass = np.zeros(size, dtype=bool)
    for t in ordered:
        at = np.flatnonzero(no_fail & ~no_pass)
        if at.size == 0:
            break
        no_pass[at] = t.no_pass(at)
    abort = np.zeros(size, dtype=bool)
    promote = np.zeros(size, dtype=bool)
    at = np.flatnonzero(~(no_fail & no_pass))
    if at.size:
        exact = [t.exact(at) for t in tests]
        abort[at] = np.any([f for f, _ in exact], axis=0)
        promote[at] = ~abort[at] & np.all([o for _, o in exact], axis=0)
    return abort, promote


def quick_at_least(
    s_high: FloatArray,
    n_high: FloatArray,
    s_low: FloatArray,
    n_low: FloatArray,
    level: float,
    threshold: float,
    design_n: ArmDesign,
) -> BoolArray:
    """True only where ``difference_upper(s_high, n_high, s_low, n_low, level, design_n) >=
    threshold``.

    The pair of cells tried is the one :func:`meshlab.stats.boundaries.difference_at_least`
    tries, the cells of ``difference_upper``'s grids that contain the points ``(xh, yl)``
    (:func:`grid_cell`). Each cell's floor in ``difference_upper`` is at most
    ``logaddexp(log(1-w) + main, log(w) + other)`` with ``M^+`` at the cell's right end and
    ``M^-`` at its left end (its monotone envelopes only lower the floor), and each of those at
    most :func:`log_mixture_bound` there. The margin covers the rounding of both computations
    (log-mixtures of a million draws are good to ~1e-8).
    """
    th, tl = np.maximum(n_high, 1.0), np.maximum(n_low, 1.0)
    ph, pl = s_high / th, s_low / tl
    vh = np.maximum(ph * (1 - ph), 1.0 / th) / th
    vl = np.maximum(pl * (1 - pl), 1.0 / tl) / tl
    gap = np.maximum(threshold - (ph - pl), 0.0)
    xh = np.clip(ph + gap * vh / (vh + vl), 0.0, 1.0)
    yl = np.clip(pl - gap * vl / (vh + vl), 0.0, 1.0)
    x_left, x_right = grid_cell(s_high, n_high, xh)
    y_left, y_right = grid_cell(s_low, n_low, yl)
    mh, ml = arm_priors(level, design_n)
    f = _floor_bound(s_high, n_high, x_left, x_right, mh, main_upper=False)
    g = _floor_bound(s_low, n_low, y_left, y_right, ml, main_upper=True)
    margin = 1e-6 * (1.0 + (n_high + n_low) / 1e6)
    ok = (f + g < np.log(1.0 / level) - margin) & (
        np.clip(x_right - y_left, -1.0, 1.0) >= threshold
    )
    return np.asarray(ok & (n_high > 0) & (n_low > 0) & (xh < 1.0) & (yl < 1.0), dtype=np.bool_)


_TAILS = np.array([9.0, 10.0, 12.0, 15.0, 20.0, 30.0, 50.0, 100.0, 200.0, 500.0])
_Z = np.concatenate((-_TAILS[::-1], np.linspace(-_DENSE, _DENSE, GRID_POINTS), _TAILS))


def grid_cell(s: FloatArray, n: FloatArray, point: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Ends of the cell of ``boundaries._local_grid(s, n, GRID_POINTS)`` that holds ``point``.

    That grid is the sorted union of the multiples of 1/32 and ``clip(rate + se z)`` (monotone
    in z); the cell is [largest point <= ``point``, smallest point > ``point``], found without
    building and sorting the grid (``point < 1``; a test holds this to ``_local_grid``).
    """
    t = np.maximum(n, 1.0)
    rate = s / t
    se = np.sqrt(np.maximum(rate * (1.0 - rate), 1.0 / t) / t)
    inner = np.clip(rate[:, None] + se[:, None] * _Z, 0.0, 1.0)
    below = (inner <= point[:, None]).sum(axis=-1)
    rows = np.arange(point.size)
    inner_left = np.where(below > 0, inner[rows, np.maximum(below - 1, 0)], -np.inf)
    inner_right = np.where(below < _Z.size, inner[rows, np.minimum(below, _Z.size - 1)], np.inf)
    fixed_left = np.floor(point * 32.0) / 32.0
    left = np.maximum(inner_left, fixed_left)
    right = np.minimum(inner_right, fixed_left + 1.0 / 32.0)
    return np.asarray(left, dtype=np.float64), np.asarray(right, dtype=np.float64)


def log_mixture_bound(
    s: FloatArray, n: FloatArray, p: FloatArray, m: float, upper: bool
) -> FloatArray:
    """An upper bound on ``log_mixture(s, n, p, m, upper)`` that needs no posterior beta function.

    With ``L(r) = r^s (1-r)^(n-s)``, prior ``Beta(a, b)`` (``a = m q``, ``b = m (1-q)``) and its
    mass ``P`` on the alternatives (``r < q``, or ``r > q`` if ``upper``), the mixture is
    ``M = int_alt L(r) prior(r) dr / (P L(q))``, at most the smaller of

    * ``L(p_hat) / L(q) = exp(n KL(p_hat || q))`` (``L`` peaks at ``p_hat = s/n``), and
    * ``max prior(r) B(s+1, n-s+1) / (P L(q))`` (``int_0^1 L = B(s+1, n-s+1)``; the prior's
      density peaks at its mode when ``a, b >= 1``, else it is unbounded and this bound unused),

    the second within ~log 2 of ``M`` when ``q`` is near ``p_hat``: it keeps the mixture's
    ``sqrt(m / n)`` that the first lacks. ``q`` is ``p`` clipped as ``log_mixture`` clips it.
    """
    q = np.clip(p, _EPS, 1.0 - _EPS)
    a, b = m * q, m * (1.0 - q)
    t = np.maximum(n, 1.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        peak = special.xlogy(s, s / (t * q)) + special.xlogy(n - s, (n - s) / (t * (1.0 - q)))
        mass = special.betainc(b, a, 1.0 - q) if upper else special.betainc(a, b, q)
        mode = np.where(a + b > 2.0, (a - 1.0) / (a + b - 2.0), 0.5)
        density = (
            special.xlogy(a - 1.0, mode) + special.xlogy(b - 1.0, 1.0 - mode) - special.betaln(a, b)
        )
        laplace = (
            density
            + special.betaln(s + 1.0, n - s + 1.0)
            - np.log(mass)
            - s * np.log(q)
            - (n - s) * np.log1p(-q)
        )
    laplace = np.where((a >= 1.0) & (b >= 1.0) & (mass > 0) & np.isfinite(laplace), laplace, np.inf)
    return np.asarray(np.minimum(np.where(np.isnan(peak), np.inf, peak), laplace), dtype=np.float64)


def _floor_bound(
    s: FloatArray, n: FloatArray, left: FloatArray, right: FloatArray, m: float, main_upper: bool
) -> FloatArray:
    """An upper bound on a cell's floor in ``difference_upper`` (see :func:`quick_at_least`)."""
    up = log_mixture_bound(s, n, right, m, upper=True)
    down = log_mixture_bound(s, n, left, m, upper=False)
    # log_mixture: the data are impossible under a rate of 0 with a success, or 1 with a failure
    up = np.where((right <= 0.0) & (s > 0), np.inf, up)
    down = np.where((left >= 1.0) & (n - s > 0), np.inf, down)
    up = np.where(right >= 1.0, -np.inf, up)  # as difference_upper's _interval_floor sets them
    down = np.where(left <= 0.0, -np.inf, down)
    main, other = (up, down) if main_upper else (down, up)
    return np.asarray(
        np.logaddexp(np.log1p(-_GUARD) + main, np.log(_GUARD) + other), dtype=np.float64
    )
