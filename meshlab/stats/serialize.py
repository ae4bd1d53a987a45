"""The machine-readable form of an :class:`Assessment` (``meshlab analyze --json``, result.json).

JSON has no inf/nan: nan becomes null and +-inf the strings "inf"/"-inf".
"""

from __future__ import annotations

import math
from typing import Any

from meshlab.stats.results import Assessment


def json_number(x: float) -> float | str | None:
    """nan -> None, +-inf -> "inf"/"-inf", finite numbers unchanged."""
    if math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def assessment_to_json(assessment: Assessment) -> dict[str, Any]:
    """The verdict, the first decision, and every metric's estimate, interval and sample sizes."""
    d = assessment.decision
    return {
        "verdict": assessment.verdict.outcome,
        "decision": None if d is None else {"at_request": d.at_request, "at_time": d.at_time},
        "reasons": list(assessment.verdict.reasons),
        "method": assessment.method,
        "mode": assessment.mode,
        "n_samples": assessment.n_samples,
        "warnings": list(assessment.warnings),
        "metrics": [
            {
                "name": m.name,
                "type": m.type,
                "verdict": m.verdict,
                "estimate": json_number(m.estimate),
                "interval": [json_number(m.lower), json_number(m.upper)],
                "tolerance": m.tolerance,
                "abort_threshold": m.abort_threshold,
                "n_baseline": m.n_baseline,
                "n_candidate": m.n_candidate,
                "method": m.method,
                "comparison": m.comparison,
                "guarantee": m.guarantee,
                "passed_at": m.passed_at,
            }
            for m in assessment.metrics
        ],
    }
