"""The typed result of a run (``result.json``) and its evidence; JSON only at the file edge.

:class:`RunResult` is what ``start`` writes and the report reads: the verdict and exit code, every
metric with its real quantile, the steps, the rollback timing, one "decided after" (requests and
seconds counted from the first recorded request to the last request of the deciding look), and
:class:`Evidence`, what a reviewer needs to trust the verdict:

* status codes per arm, the error count by the one rule (:func:`meshlab.samples.is_error_status`)
  and each arm's 4xx share, with a warning when the two arms' 4xx shares differ even though the
  error metric passed;
* the share of 2xx answers with no extracted prediction, with a warning naming the extractor when
  it matched nothing;
* requests whose response named no arm (unattributed), and requests recorded vs analysed with the
  reasons they differ;
* the pre-flight answers (``preflight.json``); see :mod:`meshlab.report.evidence`.

Each metric says which comparison it made (``comparison``: "candidate vs control" in a run with
``spec.control``, else "candidate vs baseline"); steps count the control's requests beside the
other arms'. ``to_json``/``from_json`` are the only dict conversions; ``from_json`` accepts
result files of earlier versions (missing keys take their defaults).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshlab.report.collector import CollectorSummary
from meshlab.report.evidence import (
    ARM_NAMES,
    PREFLIGHT,
    ArmEvidence,
    Evidence,
    ProbeAnswer,
    arm_evidence,
    evidence_from_json,
    evidence_to_json,
    preflight_from_json,
    preflight_to_json,
    traffic_warnings,
)

__all__ = [  # the evidence types are re-exported: readers import them from here
    "ARM_NAMES",
    "PREFLIGHT",
    "ArmEvidence",
    "DecidedAfter",
    "Evidence",
    "MetricSummary",
    "ProbeAnswer",
    "RunResult",
    "StepSummary",
    "arm_evidence",
    "metric_from_json",
    "preflight_from_json",
    "preflight_to_json",
    "step_from_json",
    "traffic_warnings",
]


@dataclass(frozen=True)
class DecidedAfter:
    """Where the decision came: requests and seconds from the first recorded request."""

    requests: int
    seconds: float


@dataclass(frozen=True)
class MetricSummary:
    """One metric at the last look; ``quantile`` is the spec's (latency metrics only)."""

    name: str
    type: str
    verdict: str
    estimate: float | None
    lower: float | None
    upper: float | None
    tolerance: float
    abort_threshold: float = 0.0
    n_baseline: int = 0
    n_candidate: int = 0
    method: str = ""
    guarantee: str = ""
    quantile: float | None = None
    comparison: str = "candidate vs baseline"  # or "candidate vs control" (spec.control)
    passed_at: int | None = None  # requests at its first passing look (a sequential pass stands)


@dataclass(frozen=True)
class StepSummary:
    step: str
    label: str
    weight: int
    mirror: float
    duration_s: float
    baseline: int
    candidate: int
    outcome: str
    control: int = 0  # the control arm's requests (spec.control)

    def requests_json(self) -> dict[str, int]:
        """Requests per arm; the control only when it served some."""
        out = {"baseline": self.baseline, "candidate": self.candidate}
        return {**out, "control": self.control} if self.control else out


@dataclass(frozen=True)
class RunResult:
    """The final result of one run, as ``result.json`` holds it."""

    experiment: str
    verdict: str
    exit_code: int
    reason: str
    namespace: str = ""
    strategy: str = ""
    target: str = "local"
    endpoint: str = ""
    final_step: str = ""
    decided_after: DecidedAfter | None = None
    metrics: tuple[MetricSummary, ...] = ()
    n_baseline: int = 0
    n_candidate: int = 0
    n_control: int = 0
    guarantee: str = ""
    alpha: float = 0.05
    beta: float = 0.05
    method: str = "sequential"
    rollback: Mapping[str, float] | None = None
    steps: tuple[StepSummary, ...] = ()
    duration_s: float = 0.0
    requests: int = 0
    evidence: Evidence | None = None
    approximation: str = ""
    collector: CollectorSummary | None = None  # a cluster shadow test's collector counts

    def to_json(self) -> dict[str, Any]:
        """The ``result.json`` object (and ``start --json``); unbounded numbers as "inf"/"-inf"."""
        d = self.decided_after
        return {
            "experiment": self.experiment,
            "namespace": self.namespace,
            "strategy": self.strategy,
            "target": self.target,
            "endpoint": self.endpoint,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "final_step": self.final_step,
            "decided_after": None
            if d is None
            else {"requests": d.requests, "seconds_after_first_request": d.seconds},
            # the earlier key, kept for readers of older results: a 0-based index, same seconds
            "decision": None if d is None else {"at_request": d.requests - 1, "at_time": d.seconds},
            "metrics": [_metric_json(m) for m in self.metrics],
            "n_baseline": self.n_baseline,
            "n_candidate": self.n_candidate,
            **({"n_control": self.n_control} if self.n_control else {}),
            "guarantee": self.guarantee,
            "alpha": self.alpha,
            "beta": self.beta,
            "method": self.method,
            "rollback": None if self.rollback is None else dict(self.rollback),
            "steps": [
                {
                    "step": s.step,
                    "label": s.label,
                    "weight": s.weight,
                    "mirror": s.mirror,
                    "duration_s": s.duration_s,
                    "requests": s.requests_json(),
                    "outcome": s.outcome,
                }
                for s in self.steps
            ],
            "duration_s": self.duration_s,
            "requests": self.requests,
            "evidence": None if self.evidence is None else evidence_to_json(self.evidence),
            **({"approximation": self.approximation} if self.approximation else {}),
            **({"collector": self.collector.to_json()} if self.collector else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunResult:
        decided = data.get("decided_after")
        old = data.get("decision")
        after = None
        if isinstance(decided, dict):
            after = DecidedAfter(
                int(decided["requests"]), float(decided["seconds_after_first_request"])
            )
        elif isinstance(old, dict) and "at_request" in old:
            after = DecidedAfter(int(old["at_request"]) + 1, float(old.get("at_time", 0.0)))
        rollback = data.get("rollback")
        return cls(
            experiment=str(data.get("experiment", "")),
            verdict=str(data.get("verdict", "inconclusive")),
            exit_code=int(data.get("exit_code", 3)),
            reason=str(data.get("reason", "")),
            namespace=str(data.get("namespace", "")),
            strategy=str(data.get("strategy", "")),
            target=str(data.get("target", "local")),
            endpoint=str(data.get("endpoint", "")),
            final_step=str(data.get("final_step", "")),
            decided_after=after,
            metrics=tuple(metric_from_json(m) for m in data.get("metrics") or []),
            n_baseline=int(data.get("n_baseline", 0)),
            n_candidate=int(data.get("n_candidate", 0)),
            n_control=int(data.get("n_control", 0)),
            guarantee=str(data.get("guarantee", "")),
            alpha=float(data.get("alpha", 0.05)),
            beta=float(data.get("beta", 0.05)),
            method=str(data.get("method", "sequential")),
            rollback=None
            if not isinstance(rollback, dict)
            else {k: float(v) for k, v in rollback.items() if isinstance(v, int | float)},
            steps=tuple(step_from_json(s) for s in data.get("steps") or []),
            duration_s=float(data.get("duration_s", 0.0)),
            requests=int(data.get("requests", 0)),
            evidence=evidence_from_json(data.get("evidence")),
            approximation=str(data.get("approximation", "")),
            collector=CollectorSummary.from_json(data.get("collector")),
        )


def _number(value: float | None) -> float | str | None:
    if value is None or math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _parse_number(value: Any) -> float | None:
    return None if value is None else float(value)


def _metric_json(m: MetricSummary) -> dict[str, Any]:
    return {
        "name": m.name,
        "type": m.type,
        "verdict": m.verdict,
        "estimate": _number(m.estimate),
        "interval": [_number(m.lower), _number(m.upper)],
        "tolerance": m.tolerance,
        "abort_threshold": m.abort_threshold,
        "n_baseline": m.n_baseline,
        "n_candidate": m.n_candidate,
        "method": m.method,
        "guarantee": m.guarantee,
        "quantile": m.quantile,
        "comparison": m.comparison,
        "passed_at": m.passed_at,
    }


def metric_from_json(m: Mapping[str, Any], quantile: float | None = None) -> MetricSummary:
    """A metric entry of ``meshlab analyze --json``/result.json; ``quantile`` from the spec."""
    lo, hi = [*(m.get("interval") or []), None, None][:2]
    q = m.get("quantile", quantile)
    return MetricSummary(
        name=str(m["name"]),
        type=str(m["type"]),
        verdict=str(m.get("verdict", "inconclusive")),
        estimate=_parse_number(m.get("estimate")),
        lower=_parse_number(lo),
        upper=_parse_number(hi),
        tolerance=float(m.get("tolerance", 0.0)),
        abort_threshold=float(m.get("abort_threshold", 0.0)),
        n_baseline=int(m.get("n_baseline", 0)),
        n_candidate=int(m.get("n_candidate", 0)),
        method=str(m.get("method", "")),
        guarantee=str(m.get("guarantee", "")),
        quantile=None if q is None else float(q),
        comparison=str(m.get("comparison", "candidate vs baseline")),
        passed_at=None if m.get("passed_at") is None else int(m["passed_at"]),
    )


def step_from_json(s: Mapping[str, Any]) -> StepSummary:
    requests = s.get("requests") or {}
    return StepSummary(
        step=str(s.get("step", "")),
        label=str(s.get("label", "")),
        weight=int(s.get("weight", 0)),
        mirror=float(s.get("mirror", 0.0)),
        duration_s=float(s.get("duration_s", 0.0)),
        baseline=int(requests.get("baseline", 0)),
        candidate=int(requests.get("candidate", 0)),
        outcome=str(s.get("outcome", "")),
        control=int(requests.get("control", 0)),
    )
