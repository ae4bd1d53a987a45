"""The incremental comparison a live run keeps for a whole experiment: feed batches, query any time.

``Comparison(analysis, mode)`` holds only sufficient statistics: a latency histogram per arm
(:class:`meshlab.stats.latency.LogGrid`), error counts per arm, prediction-category counts per arm
(canary) or paired-disagreement counts (shadow). ``update(batch)`` costs O(len(batch));
``assess()`` costs O(histogram bins + categories) and returns an :class:`Assessment` with the
per-metric results, the verdict, and the first decision reached so far (sticky: a live run acts on
the first one). Which rows count:

* canary: baseline = ``arm 0, mirrored 0`` rows, candidate = ``arm 1, mirrored 0`` rows;
  divergence = TV distance between the two arms' prediction distributions (sequential, at an
  even planned split and 2-6 labels: bets per event on the k-th labelled candidate row paired
  with the k-th labelled reference row, :func:`meshlab.stats.bets.tv_verdicts`; else the two
  arms' mixtures per event).
* shadow: baseline = ``arm 0, mirrored 0`` rows, candidate = ``arm 1, mirrored 1`` rows (the
  mirrored copies); divergence = share of ``request_id`` pairs whose predictions differ (numbers
  differ when ``|a - b| > epsilon``). Pairs may straddle batches; unmatched halves are kept.
  Errors (sequential, ``abortOn: worse``): the same pairs' error outcomes, judged by betting on
  each pair's difference (:mod:`meshlab.stats.tolbets`; incomplete pairs as
  :mod:`meshlab.stats.pairing` states: never a way to promote).
  ``paired_errors=False`` (pseudo-samples that carry no request pairing, e.g. Prometheus's) and
  ``abortOn: beyond-tolerance`` keep the two-sample union bound over the arms.

With a control arm (``Comparison(..., control=True)``; rows with ``arm`` = 2, issue 13) every
metric compares the candidate against the control, which receives the same share of traffic and
is as fresh as the candidate (Kayenta's "fresh baseline of the same size"), instead of against
production, which carries the rest of the load and is warm:

* canary: reference = ``arm 2, mirrored 0`` rows; production rows (arm 0) are not compared.
  Divergence = TV distance between the candidate's and the control's prediction distributions.
* shadow: latency and errors compare the mirrored copies, ``arm 1, mirrored 1`` against
  ``arm 2, mirrored 1`` (two copies under the same mirrored load); errors pair the two copies
  of the same request (the discordant-pair test above, candidate copy against control copy:
  the control stands where production stood, so the guarantee is unchanged); divergence = the
  candidate's paired disagreement rate with production minus the control's (both paired by
  ``request_id`` with the ``arm 0, mirrored 0`` row): the control measures the floor
  (nondeterministic inference, ties). The two rates are estimated on the same requests, so the bound is a union
  bound over the two rates' confidence sequences (each at half the level), valid under any
  dependence between them (:func:`meshlab.stats.rates.rate_difference` with ``paired=True``).

Without a control the reference is the baseline and control rows are ignored. Each
:class:`MetricResult` records its ``comparison`` ("candidate vs control" or "candidate vs
baseline", for the report). Contract for divergence: it aborts only once shown beyond its
tolerance unless ``abortOn: worse`` is set (:class:`meshlab.spec.analysis.Metric`): with no
control the floor is part of what is judged.

Error budget: each metric's abort side gets ``alpha / k`` (Bonferroni over k metrics), its promote
side the full ``beta`` (:mod:`meshlab.stats.results`). Mixture boundaries are tuned to their
metric's tolerance (:mod:`meshlab.stats.design`; ``design_n`` fixes one size); ``candidate_share``
(fixed from the plan before any data) tunes each canary arm to its share and groups canary error
rates for the aimed bets (:mod:`meshlab.stats.tolbets`, :mod:`meshlab.stats.arrival`;
``paired_bets=False`` keeps the arms' mixtures). ``intersect=True`` keeps each metric's running
intersection over the looks (Howard et al. 2021); off by default: it bought nothing measurable
(``analysis/README.md``) and would make a look depend on earlier looks, which the replay forbids.

Sequential passes stand (``latch=True``, :mod:`meshlab.stats.results`): each metric's first
passing look is kept (``MetricResult.passed_at``), and the run promotes once every metric has
passed; :meth:`record_passes` hands the replay's bulk-judged looks to its final assessment.

``method: fixed-horizon`` swaps in Mann-Whitney/Hodges-Lehmann and Clopper-Pearson bounds, valid
for one look; asking a second time adds a warning to the assessment.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from meshlab.errors import ConfigError
from meshlab.samples import Samples
from meshlab.spec.analysis import Analysis, Metric
from meshlab.stats import bets, classic, latency, rates, tolbets
from meshlab.stats.arrival import ArrivalGroups, batch_order, grouping_for
from meshlab.stats.design import arm_designs, design_size
from meshlab.stats.pairing import ErrorPairs
from meshlab.stats.predictions import Categories, LabelPairs, Pairs
from meshlab.stats.results import Assessment, Decision, MetricResult, decide

Mode = Literal["canary", "shadow"]
MODES: tuple[Mode, ...] = ("canary", "shadow")


class Comparison:
    """Sequential (or fixed-horizon) comparison of candidate against baseline, fed in batches."""

    def __init__(
        self,
        analysis: Analysis,
        mode: Mode = "canary",
        *,
        design_n: float | None = None,
        grid: latency.LogGrid | None = None,
        intersect: bool = False,
        control: bool = False,
        paired_errors: bool = True,
        candidate_share: float | None = None,
        paired_bets: bool = True,
        latch: bool = True,
        steady: bool = True,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"--mode: {mode!r} is not one of {', '.join(MODES)}")
        self.analysis, self.mode, self.design_n = analysis, mode, design_n
        self.control = control
        # the candidate's planned share of the compared canary requests (design.arm_designs)
        self.candidate_share = candidate_share
        self.comparison = "candidate vs control" if control else "candidate vs baseline"
        self.intersect = intersect
        # sequential passes stand (results.py): each metric's first passing look, in requests
        self.latch = latch
        self._passed_at: dict[str, int] = {}
        self.paired_errors = paired_errors and mode == "shadow"
        # canary error rates by betting on requests grouped in arrival order (stats.tolbets)
        self.paired_bets = paired_bets and mode == "canary"
        # each candidate request grouped with its share of reference requests (stats.arrival)
        # groups of one split only when every weighted step keeps it (manifests.steady_split):
        # a 5% group of 1 + 19 would waste a 50% step's candidate requests
        grouping = grouping_for(candidate_share, groups=steady)
        self.grouping = grouping if self.paired_bets else None
        self._arrival = ArrivalGroups(self.grouping or bets.PAIRS)
        self._error_pairs = ErrorPairs()
        # Each metric's running intersection of its confidence sequence over the looks so far.
        self._running: dict[str, tuple[float, float]] = {}
        self.sequential = analysis.method == "sequential"
        self.grid = grid or latency.LogGrid()
        self.alpha_share = analysis.alpha / len(analysis.metrics)
        self.n_seen, self.looks = 0, 0
        self.first_time: float | None = None
        self.last_time = 0.0
        self.decision: Decision | None = None
        self._hist = np.zeros((2, self.grid.size), dtype=np.int64)
        self._raw: tuple[list[npt.NDArray[np.float64]], ...] = ([], [])  # fixed-horizon only
        self._n = np.zeros(2, dtype=np.int64)
        self._errors = np.zeros(2, dtype=np.int64)
        self._categories = {m.name: Categories(m.epsilon) for m in self._divergence}
        # canary TV by bets: labelled rows paired in arrival order (predictions.LabelPairs)
        self._label_pairs = {m.name: LabelPairs() for m in self._divergence}
        self._pairs = {m.name: Pairs(m.epsilon) for m in self._divergence}
        # shadow with a control: the control's paired disagreement with production (the floor)
        self._floor = {m.name: Pairs(m.epsilon) for m in self._divergence}

    @property
    def _divergence(self) -> list[Metric]:
        return [m for m in self.analysis.metrics if m.type == "prediction-divergence"]

    def update(self, batch: Samples) -> None:
        """Add a batch of samples (rows in time order, continuing the previous batches)."""
        if len(batch) == 0:
            return
        # min/max rather than first/last row: the verdict must not depend on order within a batch
        first = float(batch.timestamp.min())
        self.first_time = first if self.first_time is None else min(self.first_time, first)
        self.last_time = max(self.last_time, float(batch.timestamp.max()))
        self.n_seen += len(batch)
        slot = self._slots(
            batch
        )  # 0 = reference (baseline or control), 1 = candidate, -1 = not compared
        use = slot >= 0
        arm = slot[use]
        size = self.grid.size
        bins = self.grid.index(batch.latency_ms[use])
        self._hist += np.bincount(arm * size + bins, minlength=2 * size).reshape(2, size)
        if not self.sequential:
            for a in (0, 1):
                self._raw[a].append(batch.latency_ms[use][arm == a])
        self._n += np.bincount(arm, minlength=2)
        failed = batch.errors(self.analysis.expected_statuses)[use]
        self._errors += np.bincount(arm[failed], minlength=2)
        paired = any(m.type == "error-rate" and self.pairs_errors(m) for m in self.analysis.metrics)
        betting = [m for m in self.analysis.metrics if self.bets_on(m) or self.tv_bets_on(m)]
        order = (
            batch_order(batch.timestamp[use], batch.request_id[use], failed)
            if betting or paired
            else None
        )
        if paired:  # pairs complete in the batch's own order: the bets' snapshots depend on it
            assert order is not None
            self._error_pairs.add(arm[order], batch.request_id[use][order], failed[order])
        if order is not None and any(m.type == "error-rate" for m in betting):
            self._arrival.add(arm[order], failed[order])
        if not self._divergence:
            return
        if self.mode == "canary":
            side = arm.astype(np.int8)
            for m in self._divergence:
                codes = self._categories[m.name].add(side, batch.prediction[use])
                if order is not None and self.tv_bets_on(m):
                    self._label_pairs[m.name].add(side[order], codes[order])
            return
        production = ~batch.mirrored & (batch.arm == 0)
        for pairs, other in ((self._pairs, 1), (self._floor, 2)):
            if other == 2 and not self.control:
                break
            rows = production | (batch.mirrored & (batch.arm == other))
            side = np.where(batch.arm[rows] == 0, 0, 1).astype(np.int8)
            for m in self._divergence:
                pairs[m.name].add(side, batch.request_id[rows], batch.prediction[rows])

    def compared(self, batch: Samples) -> npt.NDArray[np.bool_]:
        """The rows some metric uses; the rest are read, not compared (``meshlab analyze``)."""
        used = self._slots(batch) >= 0
        if self.mode == "shadow" and (not self.control or self._divergence):
            used |= ~batch.mirrored & (batch.arm == 0)  # the production row a copy pairs with
        return np.asarray(used, dtype=np.bool_)

    def _slots(self, batch: Samples) -> npt.NDArray[np.int64]:
        """Per row: 0 = the reference arm's compared rows, 1 = the candidate's, -1 = neither."""
        want = 1 if self.mode == "shadow" else 0  # shadow compares the mirrored copies
        reference_arm = 2 if self.control else 0
        reference_mirrored = 1 if self.control and self.mode == "shadow" else 0
        arm, mirrored = batch.arm, batch.mirrored.astype(np.int64)
        slot = np.full(len(batch), -1, dtype=np.int64)
        slot[(arm == reference_arm) & (mirrored == reference_mirrored)] = 0
        slot[(arm == 1) & (mirrored == want)] = 1
        return slot

    def design(self, m: Metric) -> float:
        """The mixture design size of a metric: fixed when given, else tuned to its tolerance."""
        if self.design_n is not None:
            return float(self.design_n)
        return design_size(m.type, float(m.tolerance), float(m.quantile or 0.5))

    def arm_design(self, m: Metric) -> float | tuple[float, float]:
        """A canary two-arm difference's design: per arm (base, candidate) at an unequal split.

        Fixed from the plan before any data (``candidate_share``), so the guarantee holds; the
        arms' mixtures are each tightest near the arm's own sample size at a decision.
        """
        design = self.design(m)
        if self.design_n is not None or self.candidate_share is None or self.mode != "canary":
            return design
        return arm_designs(design, self.candidate_share)

    def bets_on(self, m: Metric) -> bool:
        """Whether ``m`` is a canary error rate judged by bets on grouped requests (tolbets)."""
        return self.grouping is not None and self.sequential and m.type == "error-rate"

    def tv_bets_on(self, m: Metric) -> bool:
        """Whether ``m`` is a canary TV distance judged by bets on label pairs, per event
        (:func:`meshlab.stats.bets.tv_verdicts`; at an even planned split only: a 5% canary's
        one-to-one pairs would leave most reference rows unused), while 2-6 labels are seen."""
        return self.grouping == bets.PAIRS and self.sequential and m.type == "prediction-divergence"

    def _tv_betting(self, m: Metric) -> bool:
        """Whether the TV distance of ``m`` is judged by its label pairs' bets now (2-6 labels)."""
        k = self._label_pairs[m.name].joint.shape[0] if m.name in self._label_pairs else 0
        return self.tv_bets_on(m) and 2 <= k <= rates.MAX_SET_CATEGORIES

    def pairs_errors(self, m: Metric) -> bool:
        """Whether error-rate metric ``m`` is judged on request pairs (see the module docstring)."""
        return self.paired_errors and self.sequential and m.abort_on != "beyond-tolerance"

    def _metric(self, m: Metric) -> MetricResult:
        a, b, seq = self.alpha_share, self.analysis.beta, self.sequential
        design = self.design(m)
        n_b, n_c = int(self._n[0]), int(self._n[1])
        if m.type == "latency":
            q = float(m.quantile if m.quantile is not None else 0.5)
            if seq:
                cum = np.cumsum(self._hist, axis=1)
                lo_, est_, hi_ = latency.ratio_interval(cum[0], cum[1], q, a, b, self.grid, design)
                lo, est, hi = float(lo_), float(est_), float(hi_)
                method, text = f"quantile confidence sequence (p{100 * q:g})", latency.GUARANTEE
            else:
                lo, est, hi, _ = classic.hodges_lehmann(
                    np.concatenate([np.zeros(0), *self._raw[0]]),
                    np.concatenate([np.zeros(0), *self._raw[1]]),
                    a,
                    b,
                )
                method, text = "Mann-Whitney U / Hodges-Lehmann (fixed horizon)", classic.GUARANTEE
            how = ""
        elif m.type == "error-rate" and self.pairs_errors(m):
            e, tol = self._error_pairs, float(m.tolerance)
            n_b = n_c = e.pairs
            lo, est, hi = tolbets.interval(
                e.snapshots, a, b, tol, (0.0, tol), unmatched=e.unmatched_failures, copies=True
            )
            method = "paired error-rate difference"
            how = (
                f"{e.pairs} copies paired by request_id; failed copies still unmatched count "
                "against the candidate"
            )
        elif self.bets_on(m):
            ap, tol = self._arrival, float(m.tolerance)
            thresholds = (tol if m.abort_on == "beyond-tolerance" else 0.0, tol)
            g = ap.grouping
            lo, est, hi = tolbets.interval(ap.snapshots, a, b, tol, thresholds, g)
            method = "error-rate difference"
            how = f"{ap.groups} {g.describe()} in arrival order"
        elif m.type == "error-rate":
            shadow = self.mode == "shadow"
            lo_, est_, hi_ = rates.rate_difference(
                self._errors[0], n_b, self._errors[1], n_c, a, b, seq, self.arm_design(m), shadow
            )
            lo, est, hi = float(lo_), float(est_), float(hi_)
            method = "error-rate difference"
            how = (
                "Agresti-Caffo interval"
                if not seq
                else "union bound over the two arms (paired requests)"
                if shadow
                else "product of the two arms' mixtures"
            )
        elif self.mode == "shadow" and self.control:
            pairs, floor = self._pairs[m.name], self._floor[m.name]
            n_b, n_c = floor.pairs, pairs.pairs
            lo_, est_, hi_ = rates.rate_difference(
                floor.differ, floor.pairs, pairs.differ, pairs.pairs, a, b, seq, design, True
            )
            lo, est, hi = float(lo_), float(est_), float(hi_)
            method = "paired disagreement rate above the control's"
            how = f"pairs with production differ when |a-b| > {m.epsilon:g}; " + (
                "union bound over the two rates" if seq else "Agresti-Caffo interval"
            )
        elif self.mode == "shadow":
            pairs = self._pairs[m.name]
            n_b = n_c = pairs.pairs
            lo_, est_, hi_ = rates.rate_interval(pairs.differ, pairs.pairs, a, b, seq, design)
            lo, est, hi = float(lo_), float(est_), float(hi_)
            method = "paired disagreement rate"
            how = f"pairs differ when |a-b| > {m.epsilon:g}"
            how = how if seq else f"Clopper-Pearson; {how}"
        elif self._tv_betting(m):
            joint = self._label_pairs[m.name].joint
            k, tol = joint.shape[0], float(m.tolerance)
            labelled = self._categories[m.name].counts.sum(axis=1)
            n_b, n_c = int(labelled[0]), int(labelled[1])
            thresholds = (tol if m.abort_on == "beyond-tolerance" else 0.0, tol)
            scale = tol / bets.TV_VARIANCE
            lo, est, hi = bets.tv_bet_interval(joint, rates._subsets(k), a, b, scale, thresholds)
            method = "total-variation distance of predictions"
            how = f"{int(joint.sum())} pairs of labelled requests in arrival order, {2**k - 2} events of {k} labels"
        else:
            counts = self._categories[m.name].counts
            n_b, n_c = int(counts[0].sum()), int(counts[1].sum())
            lo_, est_, hi_ = rates.tv_interval(counts[0], counts[1], a, b, seq, self.arm_design(m))
            lo, est, hi = float(lo_), float(est_), float(hi_)
            method = "total-variation distance of predictions"
            k = counts.shape[1]
            how = (
                f"Bonferroni over {2**k - 2} events of {k} labels"
                if seq and 2 <= k <= rates.MAX_SET_CATEGORIES
                else f"Bonferroni over 4 x {k} label-rate bounds"
            )
            how = how if seq else f"Clopper-Pearson; {how}"
        if m.type != "latency":
            text = rates.SEQUENTIAL_GUARANTEE if seq else rates.FIXED_GUARANTEE
            aimed = self.bets_on(m) or (m.type == "error-rate" and self.pairs_errors(m))
            text = tolbets.GUARANTEE if aimed else bets.GUARANTEE if self._tv_betting(m) else text
            method += " confidence sequence" if seq else " (fixed horizon)"
        if n_b == 0 or n_c == 0:  # no data is never a pass, nor a fail
            lo, hi = -math.inf, math.inf
        elif seq and self.intersect:  # every look's interval holds at once: keep the tightest
            run_lo, run_hi = self._running.get(m.name, (-math.inf, math.inf))
            lo, hi = max(lo, run_lo), min(hi, run_hi)
            self._running[m.name] = (lo, hi)
        return MetricResult(
            name=m.name,
            type=m.type,
            estimate=est,
            lower=lo,
            upper=hi,
            tolerance=float(m.tolerance),
            abort_threshold=float(m.tolerance) if m.abort_on == "beyond-tolerance" else 0.0,
            n_baseline=n_b,
            n_candidate=n_c,
            method=method,
            guarantee=text.format(a=a, b=b, how=how),
            comparison=self.comparison,
        )

    def record_passes(self, passed_at: dict[str, int]) -> None:
        """Metrics that passed at looks this comparison was not assessed at (the replay's final
        assessment: its looks were judged in bulk), with the requests seen there."""
        for name, at in passed_at.items():
            self._passed_at.setdefault(name, at)

    def assess(self) -> Assessment:
        """Results and verdict on everything fed so far; records the first decision reached."""
        self.looks += 1
        results = tuple(self._metric(m) for m in self.analysis.metrics)
        if self.sequential and self.latch:
            for r in results:
                if r.verdict == "pass":
                    self._passed_at.setdefault(r.name, self.n_seen)
            results = tuple(replace(r, passed_at=self._passed_at.get(r.name)) for r in results)
        verdict = decide(results)
        if self.decision is None and verdict.outcome != "inconclusive":
            start = self.first_time if self.first_time is not None else self.last_time
            self.decision = Decision(verdict.outcome, self.n_seen - 1, self.last_time - start)
        warnings: tuple[str, ...] = ()
        if not self.sequential and self.looks > 1:
            warnings = (
                f"method fixed-horizon was evaluated at {self.looks} looks; its alpha and beta hold "
                "for one look only, so repeated looks inflate the false-abort rate "
                "(use method: sequential for live runs)",
            )
        return Assessment(
            verdict=verdict,
            metrics=results,
            n_samples=self.n_seen,
            decision=self.decision,
            method=self.analysis.method,
            mode=self.mode,
            warnings=warnings,
        )
