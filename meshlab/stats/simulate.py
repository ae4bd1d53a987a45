"""Vectorised simulation of whole sequential experiments: the engine of the calibration and of plans.

:func:`simulate` runs ``reps`` experiments at once (numpy arrays over replications) and judges
them at every look exactly as :class:`meshlab.stats.Comparison` does: the same bound functions,
alpha split (Bonferroni over metrics on the abort side, full beta on the promote side) and
per-metric design sizes (:mod:`meshlab.stats.design`). It returns, per replication, whether and
after how many requests it aborted or promoted: ``analysis/calibration.py`` checks the error
guarantees and efficiency with it, ``meshlab plan`` predicts how long an experiment will take.

The world is a stated model (:class:`World`, with the other scenario types in
:mod:`meshlab.stats.simworld`): lognormal latencies, Bernoulli errors, categorical
predictions (canary) or paired disagreements (shadow), optionally with shared bursts. Where the
model makes them independent of the rest, counts are drawn per look instead of per request
(labels as multinomial, canary errors as binomial counts of each arm's requests): the same
distribution, at a fraction of the cost. Each look's tests come from :mod:`meshlab.stats.looktests`. Effects
(:class:`Effect`) scale the candidate's latency, add to its error rate and move its prediction
distribution. Randomness comes only from the ``numpy.random.Generator`` passed in.

Biases of real servers (issue 13), all off by default: ``World.load_slope`` makes an arm's
median latency grow with its share of the traffic (x ``1 + load_slope * share``);
``World.cold_start`` makes a freshly started arm (the candidate, and the control) slower at first
(x ``1 + cold_start * exp(-age / cold_tau)``, age in the arm's own requests); ``World.floor``
makes every copy of a model disagree with production on that share of requests
(nondeterministic inference, ties). ``Setup.control`` adds the equal-load control arm: a canary
step routes candidate ``w``, control ``min(w, 1 - w)`` and production the rest (as
:func:`meshlab.manifests.routing.routing_plan` does), and every metric compares the
candidate with the control; in shadow both get the mirrored copy and divergence is the
candidate's disagreement minus the control's, exactly as ``Comparison(control=True)`` judges.
A symmetric floor leaves the canary's TV distance unchanged (both arms' prediction
distributions move alike), so the floor only matters in shadow mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from meshlab.stats import looktests, tolbets
from meshlab.stats.arrival import ArrivalGroups, grouping_for
from meshlab.stats.bets import PAIRS, Grouping
from meshlab.stats.boundaries import DEFAULT_DESIGN_N
from meshlab.stats.design import compared_share, design_size
from meshlab.stats.latency import LogGrid
from meshlab.stats.replay import judge
from meshlab.stats.simworld import Effect as Effect  # re-exported
from meshlab.stats.simworld import Levers as Levers  # re-exported
from meshlab.stats.simworld import SimMetric as SimMetric  # re-exported
from meshlab.stats.simworld import World as World  # re-exported
from meshlab.stats.sizes import one_look_size as one_look_size  # re-exported
from meshlab.stats.standing import judge_tracking

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

GRID = LogGrid(lo=0.5, hi=5000.0, ratio=1.001)  # the default grid's 0.1% bins, narrower range


@dataclass(frozen=True)
class Setup:
    """One simulated experiment design: metrics, error budget, traffic split, look schedule."""

    metrics: tuple[SimMetric, ...]
    alpha: float = 0.05
    beta: float = 0.05
    mode: str = "canary"  # or "shadow"
    weights: tuple[tuple[float, float], ...] = ((math.inf, 0.5),)  # (until request, weight)
    every: int = 200
    horizon: int = 40_000
    world: World = field(default_factory=World)
    effect: Effect = field(default_factory=Effect)
    levers: Levers = field(default_factory=Levers)
    control: bool = False  # an equal-load control arm: candidate vs control (issue 13)
    # the candidate weight the arms' designs are tuned to (Comparison's candidate_share, from
    # the plan's first weighted step); None: this setup's first weight
    design_weight: float | None = None
    # every weighted step keeps the planned split (manifests.steady_split): canary error rates
    # are grouped by it; else one-to-one pairs near an even split, the arms' mixtures elsewhere
    steady: bool = True

    def planned_share(self) -> float:
        """The candidate's share of the compared requests the arms' bounds are tuned to, as
        ``Comparison(candidate_share=...)`` (the plan's first weighted step)."""
        first = self.weights[0][1] if self.design_weight is None else self.design_weight
        return compared_share(first, self.control)

    def grouping(self) -> Grouping | None:
        """How canary error rates are grouped for the bets, as ``Comparison`` groups them (None:
        the arms' mixtures)."""
        if self.mode != "canary" or not self.levers.bets:
            return None
        return grouping_for(self.planned_share(), self.levers.groups and self.steady)

    def tv_bets(self) -> bool:
        """Whether the canary TV distance is judged by bets on label pairs (as ``Comparison``
        does at an even planned split)."""
        return self.levers.tv_bets and self.grouping() == PAIRS

    def weight_at(self, seen: int) -> float:
        for until, w in self.weights:
            if seen <= until:
                return w
        return self.weights[-1][1]


@dataclass
class Outcome:
    """Per replication: aborted, promoted, requests to the decision (nan when undecided)."""

    abort: BoolArray
    promote: BoolArray
    at: FloatArray
    extra: dict[str, float] = field(default_factory=dict)
    passed: FloatArray | None = None  # (metrics, reps): first look each metric passed (track)


def _designs(s: Setup) -> list[float]:
    if not s.levers.tuned_design:
        return [float(DEFAULT_DESIGN_N)] * len(s.metrics)
    scale = s.levers.design_scale
    return [scale * design_size(m.type, m.tolerance, m.quantile) for m in s.metrics]


def simulate(
    s: Setup,
    reps: int,
    rng: np.random.Generator,
    *,
    stop: tuple[str, int] | None = None,
    track: bool = False,
) -> Outcome:
    """Run ``reps`` experiments of ``s`` with a look every ``s.every`` requests, up to the horizon.

    ``stop = (outcome, k)``: stop once ``k`` runs reached ``outcome`` ("promote" or "abort"); the
    rest are reported undecided, so only quantiles up to ``k / reps`` of the decision time are
    exact (``meshlab plan`` asks for the p90 and stops there instead of running its slow tail to
    the horizon). ``track``: compute every metric's exact bounds at every look and record in
    ``Outcome.passed`` the first look at which each metric alone passes (which metric binds).
    """
    w = s.world
    types = {m.type for m in s.metrics}
    use_lat = "latency" in types
    use_div = "prediction-divergence" in types
    use_err = "error-rate" in types
    cats_p = np.asarray(w.categories, dtype=np.float64)
    cand_p = cats_p + np.concatenate(
        ([-s.effect.divergence, s.effect.divergence], np.zeros(cats_p.size - 2))
    )
    nb = GRID.size
    hist = np.zeros((2, reps, nb), dtype=np.int64) if use_lat else np.zeros((2, reps, 0), np.int64)
    n = np.zeros((2, reps), dtype=np.int64)
    err = np.zeros((4, reps), dtype=np.int64)  # per arm; shadow: then discordant pairs
    cats = np.zeros((2, reps, cats_p.size), dtype=np.int64)
    pairs = np.zeros(reps, dtype=np.int64)
    grouping = s.grouping() if use_err else None  # canary errors by bets on grouped requests
    g = grouping or Grouping()
    arrival = np.zeros((reps, tolbets.SNAPSHOTS, g.levels))  # groups so far, per snapshot
    pair_levels = np.zeros((reps, tolbets.SNAPSHOTS, 4))  # shadow: copies paired, per snapshot
    queues: dict[int, ArrivalGroups] = {}  # bursty worlds group each replication's requests
    level_odds = _level_odds(g, w.error_rate, s.effect.error_delta)
    tv_bets = use_div and s.tv_bets()  # label pairs (candidate, reference), i.i.d. draws
    labels = np.zeros((reps, cats_p.size, cats_p.size)) if tv_bets else None
    label_odds = np.outer(cand_p, cats_p).ravel()
    differ = np.zeros((2, reps), dtype=np.int64)  # shadow: [control, candidate] vs production
    abort = np.zeros(reps, dtype=bool)
    promote = np.zeros(reps, dtype=bool)
    at = np.full(reps, np.nan)
    active = np.ones(reps, dtype=bool)
    run_lo = np.full((len(s.metrics), reps), -np.inf)
    run_hi = np.full((len(s.metrics), reps), np.inf)
    passed = np.full((len(s.metrics), reps), np.nan)
    seen = 0
    burst_carry = np.zeros(reps, dtype=bool)
    mu = math.log(w.latency_median_ms)
    alpha_share = s.alpha / len(s.metrics)
    designs = _designs(s)
    shadow = s.mode == "shadow"
    for seen in range(s.every, s.horizon + 1, s.every):
        act = np.flatnonzero(active)
        if act.size == 0:
            break
        r, k = act.size, s.every
        burst = _bursts(rng, w, burst_carry, act, k) if w.bursty else np.zeros((r, k), bool)
        scale = np.where(burst, w.burst_latency, 1.0)
        p_err = np.where(burst, w.burst_errors * w.error_rate, w.error_rate)
        weight = s.weight_at(seen)
        logs: list[FloatArray | None] = [None, None]
        if shadow:  # every request is served by baseline and mirrored to the candidate
            if use_lat:
                z = rng.normal(0.0, 0.8 * w.latency_sigma, (r, k))  # request complexity, shared
                noise = 0.6 * w.latency_sigma
                logs = [mu + z + rng.normal(0.0, noise, (r, k)) for _ in range(2)]
            masks = [np.ones((r, k), dtype=bool)] * 2
            shares = (1.0, 1.0)  # production and the mirrored copies each see every request
            pairs[act] += k
            rate = w.floor + s.effect.divergence
            differ[1, act] += (rng.random((r, k)) < rate).sum(axis=1)
            if s.control:
                differ[0, act] += (rng.random((r, k)) < w.floor).sum(axis=1)
        else:
            u_arm = rng.random((r, k))
            cand = u_arm < weight
            control = min(weight, 1 - weight)  # the routing plan's split (production 1 - w - c)
            ref = (u_arm >= weight) & (u_arm < weight + control) if s.control else ~cand
            shares = (control if s.control else 1 - weight, weight)
            base = mu + rng.normal(0.0, w.latency_sigma, (r, k)) if use_lat else None
            logs = [base, base]
            masks = [ref, cand]
            if use_div:  # labels are drawn independently of the rest: counts suffice
                for a, probs in ((0, cats_p), (1, cand_p)):
                    cats[a, act] += rng.multinomial(masks[a].sum(axis=1), probs)
        # shadow: a bad request fails on both arms (unless the world's pairs fail independently)
        shared_err = rng.random((r, k)) if use_err and shadow and w.shared_errors else None
        failed: list[BoolArray] = []
        before = np.minimum(n[0, act] // g.ref, n[1, act] // g.cand)
        paired = np.minimum(n[0, act], n[1, act])
        for a in (0, 1):
            m = masks[a]
            n[a, act] += m.sum(axis=1)
            if use_err:
                delta = s.effect.error_delta if a == 1 else 0.0
                if not shadow and not w.bursty:  # independent draws: counts suffice
                    err[a, act] += rng.binomial(m.sum(axis=1), w.error_rate + delta)
                else:
                    u_err = shared_err if shared_err is not None else rng.random((r, k))
                    failed.append((u_err < p_err + delta) & m)
                    err[a, act] += failed[-1].sum(axis=1)
            if use_lat:
                log_a = logs[a]
                assert log_a is not None
                shift = math.log(s.effect.latency_ratio) if a == 1 else 0.0
                shift += math.log1p(w.load_slope * shares[a])
                if w.cold_start and (a == 1 or s.control):  # fresh arms warm up as they serve
                    age = n[a, act][:, None] - m.sum(axis=1)[:, None] + np.cumsum(m, axis=1)
                    shift = shift + np.log1p(w.cold_start * np.exp(-age / w.cold_tau))
                idx = GRID.index(np.exp(log_a + shift) * scale)
                flat = (act[:, None] * nb + idx)[m]
                hist[a] += np.bincount(flat, minlength=reps * nb).reshape(reps, nb)
        if grouping is not None and not w.bursty:  # i.i.d. requests: new groups' levels drawn
            pieces = tolbets.split(before, np.minimum(n[0, act] // g.ref, n[1, act] // g.cand))
            for snap in np.flatnonzero(pieces.any(axis=0)):
                arrival[act, snap] += rng.multinomial(pieces[:, snap], level_odds)
        elif grouping is not None:  # bursty: group the requests in arrival order
            for i, rep in enumerate(act.tolist()):
                rows = masks[0][i] | masks[1][i]
                queue = queues.setdefault(rep, ArrivalGroups(grouping))
                queue.add(masks[1][i][rows].astype(np.int8), (failed[0][i] | failed[1][i])[rows])
                arrival[rep] = queue.snapshots
        if labels is not None:  # each new pair's labels: (candidate, reference), independent
            new_pairs = np.minimum(n[0, act], n[1, act]) - paired
            labels[act] += rng.multinomial(new_pairs, label_odds).reshape(
                act.size, *labels.shape[1:]
            )
        if shadow and use_err:  # pairs where only the reference / only the candidate failed
            err[2, act] += (failed[0] & ~failed[1]).sum(axis=1)
            err[3, act] += (~failed[0] & failed[1]).sum(axis=1)
            cell = np.arange(r)[:, None] * tolbets.SNAPSHOTS + tolbets.snapshot_of(
                range(seen - k, seen)
            )
            flat = cell * 4 + 2 * failed[1] + failed[0]  # PAIRS level: candidate x 2 + reference
            pair_levels[act] += np.bincount(flat.ravel(), minlength=pair_levels[act].size).reshape(
                r, tolbets.SNAPSHOTS, 4
            )
        tests = looktests.tests(
            s, act, hist, n, err, cats, pairs, differ, alpha_share, designs, weight, GRID, arrival,
            labels, pair_levels,
        )  # fmt: skip
        if s.levers.intersect:  # every metric's exact bounds at every look
            lows, highs = looktests.exact_bounds(tests)
            run_lo[:, act] = np.maximum(run_lo[:, act], lows)
            run_hi[:, act] = np.minimum(run_hi[:, act], highs)
            fails = run_lo[:, act] > np.array([[m.abort_threshold] for m in s.metrics])
            oks = run_hi[:, act] < np.array([[m.tolerance] for m in s.metrics])
            fail = fails.any(axis=0)
            ok = ~fail & oks.all(axis=0)
            if track:
                first = np.isnan(passed[:, act]) & oks & ~fails
                passed[:, act] = np.where(first, seen, passed[:, act])
        else:  # the verdict only, with the replay's cheap rule-outs
            if s.levers.latch or track:
                fail, ok, first = judge_tracking(tests, np.isnan(passed[:, act]))
                passed[:, act] = np.where(first, seen, passed[:, act])
                if s.levers.latch:  # a pass stands: promote once every metric has passed
                    ok = ~fail & ~np.isnan(passed[:, act]).any(axis=0)
            else:
                fail, ok = judge(tests, act.size)
        abort[act[fail]] = True
        promote[act[ok]] = True
        at[act[fail | ok]] = seen
        active[act[fail | ok]] = False
        if stop is not None and (promote if stop[0] == "promote" else abort).sum() >= stop[1]:
            break  # the quantiles asked for are known: later decisions lie beyond them
    return Outcome(
        abort,
        promote,
        at,
        {"horizon": float(s.horizon), "stopped": float(seen)},
        passed if track or s.levers.latch else None,
    )


def _level_odds(g: Grouping, base: float, delta: float) -> FloatArray:
    """The probability of each level of a group of i.i.d. requests (failure rates ``base`` and
    ``base + delta``)."""
    kc, kr = np.divmod(np.arange(g.levels), g.ref + 1)
    odds = sps.binom.pmf(kc, g.cand, base + delta) * sps.binom.pmf(kr, g.ref, base)
    return np.asarray(odds / odds.sum(), dtype=np.float64)


def _bursts(
    rng: np.random.Generator, w: World, carry: BoolArray, act: npt.NDArray[np.intp], k: int
) -> BoolArray:
    """A two-state Markov chain per replication: enter a burst w.p. ``w.burst_enter`` per
    request, leave w.p. ``w.burst_leave``."""
    flips = rng.random((act.size, k))
    burst = np.zeros((act.size, k), dtype=bool)
    cur = carry[act]
    for t in range(k):
        cur = np.where(cur, flips[:, t] >= w.burst_leave, flips[:, t] < w.burst_enter)
        burst[:, t] = cur
    carry[act] = cur
    return burst


def summarize(out: Outcome) -> dict[str, float]:
    """Median, p90, quartiles of requests to a decision (inf where too many runs are undecided)."""
    at = np.where(np.isnan(out.at), np.inf, out.at)
    q = {
        name: float(np.quantile(at, p, method="inverted_cdf"))
        for name, p in (("q25", 0.25), ("median", 0.5), ("q75", 0.75), ("p90", 0.9), ("p95", 0.95))
    }
    q["undecided"] = float(np.isnan(out.at).mean())
    q["abort"], q["promote"] = float(out.abort.mean()), float(out.promote.mean())
    return q
