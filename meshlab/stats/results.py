"""Result types of the statistical comparison and the verdict, a pure function of metric results.

A metric's interval is ``[lower, upper]``: ``lower`` is a one-sided bound at the metric's share of
``alpha`` (abort side), ``upper`` a one-sided bound at ``beta`` (promote side). The verdict rule
(the contract of issue 5, in the spirit of Argo Rollouts' three-outcome evaluation):

* **abort** as soon as some metric's ``lower`` exceeds its abort threshold (0 = "worse than
  baseline", or the tolerance for metrics configured with ``abort_on: beyond-tolerance``);
* **promote** as soon as every metric has passed: its ``upper`` below its tolerance (and its
  ``lower`` not above its abort threshold) at this look or, with sequential bounds, at an
  earlier one (``passed_at``);
* otherwise **inconclusive**. A metric without data has the interval (-inf, inf): never a pass.

A sequential pass stands once reached: each promote-side bound is a confidence sequence, so
P(the upper bound is *ever* below the true effect) <= beta, and the first look at which it fell
below the tolerance is a rejection of "worse by the tolerance" at that level however the bound
moves afterwards (Ville's inequality; the same argument that lets a run stop at any look). The
metrics pass at their own looks, and the promote waits for the last of them. A later fail still
aborts. Measured (``analysis/calibration_results.md``, lever "a pass stands"): the A/A canary at
50% promotes after 0.62 -> 0.57 of the one-look size, false rates unchanged within their
intervals.

Error budget (stated correction): abort errors are a union over metrics, so each metric gets
``alpha / k`` (Bonferroni). A false promote needs *every* upper bound below its tolerance, in
particular the bound of a metric that is truly worse by at least its tolerance, so each metric's
upper bound is run at the full ``beta`` (intersection-union argument; no correction needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

MetricVerdict = Literal["pass", "fail", "inconclusive"]
Outcome = Literal["promote", "abort", "inconclusive"]


@dataclass(frozen=True)
class MetricResult:
    """One metric at one look: effect estimate, anytime-valid interval, sample sizes, method."""

    name: str
    type: str
    estimate: float  # nan when there is no data
    lower: (
        float  # abort-side bound, level alpha_share: P(ever above the true effect) <= alpha_share
    )
    upper: float  # promote-side bound, level beta: P(ever below the true effect) <= beta
    tolerance: float
    abort_threshold: float  # 0.0, or the tolerance for ``abort_on: beyond-tolerance``
    n_baseline: int
    n_candidate: int
    method: str
    guarantee: str
    comparison: str = "candidate vs baseline"  # or "candidate vs control" (issue 13)
    # requests seen at the look where this metric first passed (sequential bounds; None: never)
    passed_at: int | None = None

    @property
    def verdict(self) -> MetricVerdict:
        if self.lower > self.abort_threshold:
            return "fail"
        if self.upper < self.tolerance or self.passed_at is not None:
            return "pass"
        return "inconclusive"


@dataclass(frozen=True)
class Verdict:
    """Promote, abort or inconclusive, with one human-readable reason per deciding metric."""

    outcome: Outcome
    reasons: tuple[str, ...]


def _pct(x: float) -> str:
    return f"{100 * x:.3g}%"


def decide(results: Sequence[MetricResult]) -> Verdict:
    """The verdict from metric results at one look; pure, no I/O."""
    failed = [r for r in results if r.verdict == "fail"]
    if failed:
        return Verdict(
            "abort",
            tuple(
                f"{r.name}: {r.type} is worse than "
                f"{r.comparison.rsplit(' ', 1)[-1] if r.abort_threshold == 0 else 'the tolerance'} "
                f"(lower bound {_pct(r.lower)} > {_pct(r.abort_threshold)})"
                for r in failed
            ),
        )
    if results and all(r.verdict == "pass" for r in results):
        return Verdict(
            "promote",
            tuple(
                f"{r.name}: upper bound {_pct(r.upper)} < tolerance {_pct(r.tolerance)}"
                if r.upper < r.tolerance
                else f"{r.name}: upper bound fell below tolerance {_pct(r.tolerance)} at request "
                f"{r.passed_at} (now {_pct(r.upper)}; a sequential pass stands)"
                for r in results
            ),
        )
    if not results:
        return Verdict("inconclusive", ("no metrics to judge",))
    return Verdict(
        "inconclusive",
        tuple(
            f"{r.name}: no data yet"
            if r.n_baseline == 0 or r.n_candidate == 0
            else f"{r.name}: interval [{_pct(r.lower)}, {_pct(r.upper)}] still straddles "
            f"tolerance {_pct(r.tolerance)}"
            for r in results
            if r.verdict == "inconclusive"
        ),
    )


@dataclass(frozen=True)
class Decision:
    """Where the first non-inconclusive verdict came: last sample index and seconds from the first."""

    outcome: Outcome
    at_request: int
    at_time: float


@dataclass(frozen=True)
class Assessment:
    """Everything known at one look: metric results, the verdict, the first decision so far."""

    verdict: Verdict
    metrics: tuple[MetricResult, ...]
    n_samples: int
    decision: Decision | None
    method: str
    mode: str
    warnings: tuple[str, ...] = ()
