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
* the pre-flight answers (``preflight.json``).

:func:`evidence_from_samples` is pure; ``to_json``/``from_json`` are the only dict conversions.
``from_json`` accepts result files of earlier versions (missing keys take their defaults).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from meshlab.report.collector import CollectorSummary
from meshlab.samples import Samples

PREFLIGHT = "preflight.json"
ARM_NAMES = ("baseline", "candidate")


@dataclass(frozen=True)
class ProbeAnswer:
    """One pre-flight request and what it got (``body`` quoted and shortened)."""

    arm: str
    via: str  # "direct" | "sidecar" | "mesh"
    url: str
    path: str
    status: int  # 0 = no HTTP answer
    body: str
    prediction: str  # JSON text the extractor found; "" for none
    served_by: str  # the x-meshlab-arm header of the answer, "" if absent
    attempts: int
    raw: bytes = field(default=b"", repr=False, compare=False)


def preflight_to_json(answers: Sequence[ProbeAnswer]) -> list[dict[str, Any]]:
    return [
        {
            "arm": a.arm,
            "via": a.via,
            "url": a.url,
            "path": a.path,
            "status": a.status,
            "body": a.body,
            "prediction": a.prediction,
            "served_by": a.served_by,
            "attempts": a.attempts,
        }
        for a in answers
    ]


def preflight_from_json(data: Any) -> tuple[ProbeAnswer, ...]:
    if not isinstance(data, list):
        return ()
    return tuple(
        ProbeAnswer(
            str(d.get("arm", "")),
            str(d.get("via", "")),
            str(d.get("url", "")),
            str(d.get("path", "")),
            int(d.get("status", 0)),
            str(d.get("body", "")),
            str(d.get("prediction", "")),
            str(d.get("served_by", "")),
            int(d.get("attempts", 1)),
        )
        for d in data
        if isinstance(d, dict)
    )


@dataclass(frozen=True)
class ArmEvidence:
    """What one arm answered (primary requests; shadow copies for a shadow candidate)."""

    arm: str
    requests: int
    statuses: Mapping[int, int]  # status code -> count; 0 = transport failure
    errors: int
    no_prediction: int  # 2xx/3xx answers the extractor found no prediction in

    @property
    def share_4xx(self) -> float:
        n = sum(c for s, c in self.statuses.items() if 400 <= s < 500)
        return n / self.requests if self.requests else 0.0

    @property
    def answered(self) -> int:
        return sum(c for s, c in self.statuses.items() if 200 <= s < 400)

    @property
    def share_no_prediction(self) -> float:
        return self.no_prediction / self.answered if self.answered else 0.0


@dataclass(frozen=True)
class Evidence:
    """Facts about the traffic behind the verdict (see the module docstring)."""

    arms: tuple[ArmEvidence, ...]
    expected_statuses: tuple[int, ...]
    extractor: str
    unattributed: int
    recorded: int
    analysed: int
    not_analysed: tuple[tuple[str, int], ...]  # (reason, requests)
    warnings: tuple[str, ...]
    preflight: tuple[ProbeAnswer, ...] = ()
    # (source, rows) that arrived behind rows already handed on: fed on arrival, not re-sorted
    late: tuple[tuple[str, int], ...] = ()


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
                    "requests": {"baseline": s.baseline, "candidate": s.candidate},
                    "outcome": s.outcome,
                }
                for s in self.steps
            ],
            "duration_s": self.duration_s,
            "requests": self.requests,
            "evidence": None if self.evidence is None else _evidence_json(self.evidence),
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
            evidence=_evidence_from_json(data.get("evidence")),
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
    )


def _evidence_json(e: Evidence) -> dict[str, Any]:
    return {
        "arms": {
            a.arm: {
                "requests": a.requests,
                "statuses": {str(k): v for k, v in sorted(a.statuses.items())},
                "errors": a.errors,
                "share_4xx": round(a.share_4xx, 6),
                "no_prediction": a.no_prediction,
                "share_no_prediction": round(a.share_no_prediction, 6),
            }
            for a in e.arms
        },
        "expected_statuses": list(e.expected_statuses),
        "extractor": e.extractor,
        "unattributed": e.unattributed,
        "recorded": e.recorded,
        "analysed": e.analysed,
        "not_analysed": [{"reason": r, "requests": n} for r, n in e.not_analysed],
        "warnings": list(e.warnings),
        "preflight": preflight_to_json(e.preflight),
        "late_rows": {
            "total": sum(n for _, n in e.late),
            "by_source": dict(e.late),
            "handling": "fed to the statistics on arrival",
        },
    }


def _evidence_from_json(data: Any) -> Evidence | None:
    if not isinstance(data, dict):
        return None
    arms = tuple(
        ArmEvidence(
            arm,
            int(a.get("requests", 0)),
            {int(k): int(v) for k, v in (a.get("statuses") or {}).items()},
            int(a.get("errors", 0)),
            int(a.get("no_prediction", 0)),
        )
        for arm, a in (data.get("arms") or {}).items()
    )
    return Evidence(
        arms=arms,
        expected_statuses=tuple(int(s) for s in data.get("expected_statuses") or []),
        extractor=str(data.get("extractor", "")),
        unattributed=int(data.get("unattributed", 0)),
        recorded=int(data.get("recorded", 0)),
        analysed=int(data.get("analysed", 0)),
        not_analysed=tuple(
            (str(d["reason"]), int(d["requests"])) for d in data.get("not_analysed") or []
        ),
        warnings=tuple(str(w) for w in data.get("warnings") or []),
        preflight=preflight_from_json(data.get("preflight")),
        late=tuple(
            (str(k), int(v))
            for k, v in ((data.get("late_rows") or {}).get("by_source") or {}).items()
        ),
    )


def arm_evidence(
    samples: Samples, expected: Collection[int] = (), shadow: bool = False
) -> tuple[ArmEvidence, ...]:
    """Status counts, errors and missing predictions per arm.

    In shadow mode the candidate is what its mirrored copies got (the live answers all came from
    the baseline); otherwise each arm's primary requests.
    """
    errors = samples.errors(expected)
    out = []
    for code, arm in enumerate(ARM_NAMES):
        rows = (samples.arm == code) & (samples.mirrored == (shadow and code == 1))
        statuses, counts = np.unique(samples.status[rows], return_counts=True)
        answered = rows & (samples.status >= 200) & (samples.status < 400)
        missing = sum(1 for p in samples.prediction[answered] if p is None)
        out.append(
            ArmEvidence(
                arm,
                int(rows.sum()),
                {int(s): int(c) for s, c in zip(statuses, counts, strict=True)},
                int(errors[rows].sum()),
                missing,
            )
        )
    return tuple(out)


def traffic_warnings(
    arms: Sequence[ArmEvidence], extractor: str, wants_prediction: bool, unattributed: int
) -> tuple[str, ...]:
    """What a reviewer must not miss, whatever the verdict says."""
    warnings: list[str] = []
    by_name = {a.arm: a for a in arms}
    base, cand = by_name.get("baseline"), by_name.get("candidate")
    if base is not None and cand is not None and base.requests and cand.requests:
        p1, p2 = base.share_4xx, cand.share_4xx
        pooled = (p1 * base.requests + p2 * cand.requests) / (base.requests + cand.requests)
        se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / base.requests + 1 / cand.requests))
        # two-proportion z-test at 3 standard errors, and a difference worth reading (0.5 points)
        if abs(p1 - p2) > max(3 * se, 0.005):
            warnings.append(
                f"4xx answers differ between the arms: baseline {100 * p1:.3g}%, candidate "
                f"{100 * p2:.3g}% (see the status codes per arm)"
            )
    for arm in arms:
        if arm.answered and arm.no_prediction == arm.answered and wants_prediction:
            warnings.append(
                f"the extractor {extractor!r} matched nothing in any of the {arm.arm}'s "
                f"{arm.answered} answers; point spec.load.extractor at the prediction"
            )
        elif arm.no_prediction and wants_prediction:
            warnings.append(
                f"{100 * arm.share_no_prediction:.3g}% of the {arm.arm}'s answers had no "
                f"prediction at {extractor!r}"
            )
    if unattributed:
        warnings.append(
            f"{unattributed} requests got no x-meshlab-arm header (no answer from the mesh) and "
            "could not be attributed to an arm; they are not in the analysis"
        )
    return tuple(warnings)
