"""How an experiment ends: the outcome, and every ending's rollback and record, once.

Each ending (a decision, a fault, an error, an interrupt) runs with signals held
(:func:`meshlab.experiment.signals.deferred`), writes the rollback's manifest, the final event and
the state file's final phase, and is remembered: a signal that comes after it changes nothing.
"Rolled back" is said only when the mesh confirmed the rollback, never beside ROLLBACK FAILED:
right after the mesh's rollback the live source is told (``after_rollback``), so a metrics source
that died cannot turn the drain that follows into a failure. Every ending keeps the steps and the
last analysis the run reached.

:class:`Endings` is the part of :class:`meshlab.experiment.controller.Controller` that ends runs;
it is kept apart so the loop reads on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshlab.errors import ConfigError, MeshlabError
from meshlab.experiment import signals
from meshlab.experiment.faults import FaultVerdict
from meshlab.experiment.journal import Journal
from meshlab.experiment.ports import Clock, LiveSamples, Snapshot, VerdictName
from meshlab.manifests import Step, promoted, rollback
from meshlab.mesh import MeshBackend
from meshlab.samples import Sample
from meshlab.spec import Experiment

EXIT = {"promote": 0, "abort": 1, "inconclusive": 3}
EXIT_INFRA, EXIT_INTERRUPTED = 4, 130


@dataclass(frozen=True)
class Outcome:
    """How the experiment ended."""

    verdict: VerdictName
    exit_code: int
    reason: str
    final_step: str
    snapshot: Snapshot | None
    decision: dict[str, Any] | None
    rollback: dict[str, Any] | None
    steps: list[dict[str, Any]]


class Endings:
    """Ending a run: the attributes below are the controller's."""

    exp: Experiment
    mesh: MeshBackend | None
    source: LiveSamples | None
    journal: Journal
    clock: Clock
    poll_interval: float
    drain_seconds: float
    rows: list[Sample]
    steps: list[dict[str, Any]]
    _decided: dict[str, Any] | None
    _ended: Outcome | None
    _last: Snapshot | None  # the last look's analysis, kept by every ending

    def _apply(self, step: Step) -> float:
        raise NotImplementedError

    def _ending(
        self,
        verdict: VerdictName,
        reason: str,
        snapshot: Snapshot | None,
        rollback_info: dict[str, Any] | None = None,
        code: int | None = None,
    ) -> Outcome:
        """The outcome, remembered: an experiment ends once, whatever signal comes after."""
        signals.spend()
        self._ended = Outcome(
            verdict,
            EXIT[verdict] if code is None else code,
            reason,
            self.journal.state.step,
            snapshot,
            self._decided if verdict != "inconclusive" else None,
            rollback_info,
            self.steps,
        )
        return self._ended

    # -- endings (each runs with signals held) ---------------------------------------------------

    def _rollback(self) -> dict[str, Any]:
        """Roll back now and record it; then read samples briefly to time the last candidate one.

        Raises if the mesh could not roll back (the caller says so); never for the timing.
        """
        decided = self.clock()
        if self.mesh is not None:
            self.mesh.rollback()
        if self.source is not None:  # nothing that needs a failed source may fail it now
            self.source.after_rollback()
        applied = self.clock()
        self.journal.manifests(rollback())
        self.journal.set_state(step="rollback")
        info: dict[str, Any] = {
            "decided_at": decided,
            "applied_at": applied,
            "apply_ms": round(1000 * (applied - decided), 1),
        }
        if self.mesh is None:
            info["note"] = "the mesh had not started: nothing was routed to the candidate"
        return {**info, **self._drain(decided, applied)}

    def _drain(self, decided: float, applied: float) -> dict[str, Any]:
        """Samples still in flight at the rollback: how long the candidate kept serving."""
        deadline = applied + self.drain_seconds
        patience = signals.signal_count()
        try:
            while (
                self.source is not None
                and self.clock() < deadline
                and not self.source.finished
                and signals.signal_count() == patience  # another Ctrl-C: stop timing, go
            ):
                self.rows.extend(self.source.poll(self.poll_interval))
        except MeshlabError:
            pass  # the routes are back on the baseline; only the timing is cut short
        ends = [
            s.timestamp + s.latency_ms / 1000
            for s in self.rows
            if s.arm == "candidate"
            and not s.mirrored
            and s.timestamp + s.latency_ms / 1000 >= decided
        ]
        last = max(ends, default=decided)
        return {
            "decision_to_last_candidate_ms": round(1000 * max(0.0, last - decided), 1),
            "candidate_requests_after_decision": len(ends),
        }

    def _abort(self, snapshot: Snapshot, reason: str | None = None) -> Outcome:
        why = reason or "; ".join(snapshot.reasons)
        why = why or "a metric was shown to be worse than the baseline"
        with signals.deferred():
            try:
                info = self._rollback()
            except Exception:  # tried once more, then said loudly: ROLLBACK FAILED, exit 4
                return self._abandon("failed", f"aborted ({why})", EXIT_INFRA)
            self.journal.set_state(phase="aborted", detail=f"{why}; rolled back")
            self.journal.event("aborted", reason=why, **info)
            return self._ending("abort", why, snapshot, info)

    def _inconclusive(self, snapshot: Snapshot | None, why: str) -> Outcome:
        policy = self.exp.spec.limits.on_inconclusive
        if policy == "promote":
            self._apply(promoted())
            with signals.deferred():
                detail = f"{why}; promoted by onInconclusive: promote"
                self.journal.set_state(phase="promoted", detail=detail)
                self.journal.event("promoted", reason=why)
                return self._ending("inconclusive", f"{why}; promoted by policy", snapshot, code=3)
        with signals.deferred():
            try:
                info = self._rollback() if policy == "rollback" else None
            except Exception:
                return self._abandon("failed", f"inconclusive ({why})", EXIT_INFRA)
            self.journal.set_state(phase="inconclusive", detail=f"{why}; onInconclusive: {policy}")
            self.journal.event("inconclusive", reason=why, policy=policy)
            return self._ending("inconclusive", f"{why} (onInconclusive: {policy})", snapshot, info)

    def _fault(self, fault: FaultVerdict, snapshot: Snapshot | None) -> Outcome:
        """A component failed mid-run: the candidate's fault is an abort, any other exit 4."""
        if fault.role == "candidate":
            return self._abort(snapshot or _empty(), fault.reason)
        return self._abandon("failed", fault.reason, EXIT_INFRA, snapshot)

    def _end_by(self, exc: BaseException) -> Outcome:
        if self._ended is not None:  # the signal came after the ending: it stays as it is
            return self._ended
        if isinstance(exc, KeyboardInterrupt):
            during = " during start-up" if self.journal.state.phase == "starting" else ""
            return self._abandon(
                "interrupted", f"interrupted by Ctrl-C or SIGTERM{during}", EXIT_INTERRUPTED
            )
        if isinstance(exc, ConfigError):
            return self._abandon("failed", f"bad input: {exc}", 2)
        if isinstance(exc, MeshlabError):
            return self._abandon("failed", f"infrastructure failure: {exc}", EXIT_INFRA)
        if isinstance(exc, Exception):
            return self._abandon(
                "failed", f"internal error {type(exc).__name__}: {exc}", EXIT_INFRA
            )
        raise exc  # SystemExit and friends are not the experiment's to handle

    def _abandon(
        self, event: str, reason: str, code: int, snapshot: Snapshot | None = None
    ) -> Outcome:
        """Roll back after an error, a fault or an interrupt; never raises from the rollback.

        "rolled back" is said only when the mesh confirmed it, never beside ROLLBACK FAILED. The
        outcome keeps the last analysis (``snapshot``, else the last look's).
        """
        with signals.deferred():
            info: dict[str, Any] | None = None
            try:
                info = self._rollback()
            except Exception as exc:  # the mesh is broken too: say so, loudly, in the state
                reason = f"{reason}; ROLLBACK FAILED: {exc} — run 'meshlab rollback'"
            else:
                reason = f"{reason}; rolled back"
            phase = "rolled-back" if event == "interrupted" and info is not None else "failed"
            self.journal.set_state(phase=phase, detail=reason)
            self.journal.event(event, reason=reason, rolled_back=info is not None)
            return self._ending("inconclusive", reason, snapshot or self._last, info, code=code)


def _empty() -> Snapshot:
    return Snapshot("inconclusive", [], 0, 0)
