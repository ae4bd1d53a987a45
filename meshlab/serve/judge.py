"""One look of one session: load or start it, read the evidence, decide, persist, answer.

:meth:`Judge.look` is what every controller endpoint calls. It is serialized per session, does at
most one Prometheus read for a warm session (a replay for a cold one), persists the look time and
the answer before returning, and never changes a decision once reached. The answer is the
controller-neutral JSON of :func:`answer_json`; :mod:`meshlab.serve.argo` and
:mod:`meshlab.serve.flagger` map it to their controllers' conventions.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from meshlab.errors import ConfigError
from meshlab.serve.config import ServeSettings
from meshlab.serve.evidence import Counts, Evidence
from meshlab.serve.sessions import Decision, SessionKey, SessionRecord, StateStore
from meshlab.serve.targets import Target
from meshlab.spec.analysis import Analysis
from meshlab.stats import Assessment
from meshlab.stats.serialize import assessment_to_json

MAX_WARM = 256  # sessions kept warm in memory; others are replayed from their state file


@dataclass(frozen=True)
class LookRequest:
    """What a controller's call amounts to: which session, which arms, judged how."""

    key: SessionKey
    target: Target
    analysis: Analysis


def guarantee_text(analysis: Analysis) -> str:
    """The session-wide error guarantee in one sentence."""
    k = len(analysis.metrics)
    return (
        f"P(abort | candidate no worse than baseline on every metric) <= alpha = {analysis.alpha:g} "
        f"(alpha/{k} per metric); P(promote | candidate worse than baseline by a metric's "
        f"tolerance) <= beta = {analysis.beta:g}; both hold over every look of this session "
        f"({analysis.method})"
    )


def answer_json(
    record: SessionRecord, at: float, assessment: Assessment, counts: Counts, look: int
) -> dict[str, Any]:
    """The controller-neutral answer of one look (plain JSON types only)."""
    data = assessment_to_json(assessment)
    reasons = list(data["reasons"])
    starved = [arm for arm, n in counts.requests.items() if n == 0]
    if starved:
        reasons.insert(
            0, f"no requests yet from {' and '.join(starved)}: inconclusive, not a failure"
        )
    decision = None
    if assessment.verdict.outcome != "inconclusive":
        decision = {"verdict": assessment.verdict.outcome, "look": look, "at": at}
    return {
        "verdict": assessment.verdict.outcome,
        "decided": decision is not None,
        "session": {**record.key.to_json(), "started_at": record.started_at, "look": look},
        "elapsed_seconds": round(at - record.started_at, 3),
        "requests": dict(counts.requests),
        "errors": dict(counts.errors),
        "metrics": data["metrics"],
        "reasons": reasons,
        "guarantee": guarantee_text(record.analysis),
        "warnings": data["warnings"],
        "decision": decision,
    }


class Judge:
    """The sessions of one ``meshlab serve`` process."""

    def __init__(self, settings: ServeSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = StateStore(settings.state_dir)
        self._clock = clock
        self._warm: OrderedDict[str, Evidence] = OrderedDict()
        self._warm_lock = threading.Lock()  # looks of different sessions run concurrently

    def close(self) -> None:
        with self._warm_lock:
            for evidence in self._warm.values():
                evidence.close()
            self._warm.clear()

    def _start(self, request: LookRequest, at: float) -> SessionRecord:
        lag = self.settings.prometheus.read_lag
        record = SessionRecord(request.key, at, request.analysis, request.target, read_lag=lag)
        evidence = self._evidence(record)
        evidence.catch_up(record)  # the start mark: counters' values now
        answer = answer_json(record, at, evidence.comparison.assess(), evidence.counts, 0)
        answer["reasons"].insert(0, "session started: counting requests from now")
        record = replace(record, last_answer=answer)
        self.store.save(record)
        return record

    def _evidence(self, record: SessionRecord) -> Evidence:
        """The warm evidence of ``record``'s session, or a new one to replay (caller holds the
        session's lock, so only the shared cache needs guarding here)."""
        slug = record.key.slug
        with self._warm_lock:
            evidence = self._warm.get(slug)
            if (
                evidence is not None
                and evidence.started_at == record.started_at
                and evidence.applied <= len(record.looks)
            ):
                self._warm.move_to_end(slug)
                return evidence
            stale = [] if evidence is None else [evidence]
            evidence = Evidence(record, self.settings.prometheus)
            self._warm[slug] = evidence
            while len(self._warm) > MAX_WARM:
                stale.append(self._warm.popitem(last=False)[1])
        for old in stale:
            old.close()
        return evidence

    def _forget(self, key: SessionKey) -> None:
        with self._warm_lock:
            evidence = self._warm.pop(key.slug, None)
        if evidence is not None:
            evidence.close()

    def look(self, request: LookRequest) -> dict[str, Any]:
        """One look; returns the answer (see :func:`answer_json`)."""
        with self.store.lock(request.key):
            at = self._clock()
            record = self.store.load(request.key)
            if record is None:
                return {**self._start(request, at).last_answer, "looks": 0}
            if record.analysis != request.analysis or record.target != request.target:
                raise ConfigError(
                    "analysis/arms: this session started with other settings; a running analysis "
                    "keeps the metrics, tolerances and arms it started with (start a new revision "
                    "to change them)"
                )
            last = record.looks[-1] if record.looks else record.started_at
            if record.decision is not None or at - last < self.settings.min_look_gap:
                return {**record.last_answer, "looks": len(record.looks)}
            evidence = self._evidence(record)
            evidence.catch_up(record)
            look = len(record.looks) + 1
            assessment = evidence.look(at)
            answer = answer_json(record, at, assessment, evidence.counts, look)
            decision = None
            if assessment.verdict.outcome != "inconclusive":
                decision = Decision(assessment.verdict.outcome, look, at)
            record = record.with_look(at, answer, decision)
            self.store.save(record)
            if decision is not None:
                self._forget(request.key)
            return {**answer, "looks": len(record.looks)}

    def sessions(self) -> list[dict[str, Any]]:
        """A summary of every stored session."""
        return [
            {
                **r.key.to_json(),
                "started_at": r.started_at,
                "looks": len(r.looks),
                "verdict": r.last_answer.get("verdict", "inconclusive"),
            }
            for r in self.store.sessions()
        ]
