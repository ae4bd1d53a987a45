"""The evidence behind a verdict (``result.json``'s ``evidence``): what a reviewer needs to trust it.

* status codes per arm (the control's too, in a run with one), the error count by the one rule
  (:func:`meshlab.samples.is_error_status`) and each arm's 4xx share, with a warning when the
  candidate's 4xx share differs from its reference arm's even though the error metric passed;
* the share of 2xx answers with no extracted prediction, with a warning naming the extractor when
  it matched nothing;
* requests whose response named no arm (unattributed), and requests recorded vs analysed with the
  reasons they differ;
* the pre-flight answers (``preflight.json``).

:func:`arm_evidence` and :func:`traffic_warnings` are pure; ``evidence_to_json`` /
``evidence_from_json`` are the only dict conversions.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from meshlab.samples import CONTROL, Samples

PREFLIGHT = "preflight.json"
ARM_NAMES = ("baseline", "candidate", "control")


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


def evidence_to_json(e: Evidence) -> dict[str, Any]:
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


def evidence_from_json(data: Any) -> Evidence | None:
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

    In shadow mode the candidate (and the control) is what its mirrored copies got (the live
    answers all came from the baseline); otherwise each arm's primary requests. The control is
    listed only in a run that has control rows.
    """
    errors = samples.errors(expected)
    out = []
    with_control = bool((samples.arm == CONTROL).any())
    for code, arm in enumerate(ARM_NAMES if with_control else ARM_NAMES[:2]):
        rows = (samples.arm == code) & (samples.mirrored == (shadow and code != 0))
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
    # the candidate's reference: the control when the run has one (same share, same age)
    base, cand = by_name.get("control") or by_name.get("baseline"), by_name.get("candidate")
    if base is not None and cand is not None and base.requests and cand.requests:
        p1, p2 = base.share_4xx, cand.share_4xx
        pooled = (p1 * base.requests + p2 * cand.requests) / (base.requests + cand.requests)
        se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / base.requests + 1 / cand.requests))
        # two-proportion z-test at 3 standard errors, and a difference worth reading (0.5 points)
        if abs(p1 - p2) > max(3 * se, 0.005):
            warnings.append(
                f"4xx answers differ between the arms: {base.arm} {100 * p1:.3g}%, candidate "
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
