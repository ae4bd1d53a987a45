"""The experiment loop: apply a step, feed live samples to the sequential analysis, decide, repeat.

For each step of the plan the controller applies the routes, then looks at the analysis after every
batch of samples: **abort** rolls back at once (and measures how long the candidate kept serving);
**promote** (once the step has ``minSamples`` requests) moves to the next step and, after the last,
to the ``promoted`` state; a step that reaches ``maxDuration`` undecided moves on, and an experiment
still undecided after its last step or at ``experimentMaxDuration`` ends by ``onInconclusive``
(default: roll back, exit 3). A step without a concurrent baseline (canary 100%, the blue/green
switch) is entered only on a promote verdict and runs as a soak of ``minSamples`` requests whose
samples are recorded but not analysed: with no baseline beside it, they would compare the candidate
under all the load with a baseline measured under part of it. Any exception or interrupt rolls back before it propagates: traffic
is on the baseline whenever meshlab is not in control.

One analyzer runs per phase (shadow, then canary for ``then: canary``); its alpha and beta are the
experiment's divided by the number of phases (Bonferroni), so the guarantees hold for the whole run.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshlab.errors import ConfigError, MeshlabError
from meshlab.experiment.notify import Notifier
from meshlab.experiment.ports import Analyzer, Clock, LiveSamples, Progress, Snapshot, VerdictName
from meshlab.experiment.signals import raise_if_interrupted
from meshlab.experiment.state import ExperimentState, save_state
from meshlab.manifests import (
    Step,
    plan,
    promoted,
    render_step,
    rollback,
    routing_plan,
    step_filename,
    to_yaml,
)
from meshlab.mesh import MeshBackend
from meshlab.report.record import EVENTS, HISTORY, MANIFESTS, append_jsonl
from meshlab.samples import Sample
from meshlab.spec import Experiment

EXIT = {"promote": 0, "abort": 1, "inconclusive": 3}
EXIT_INFRA, EXIT_INTERRUPTED = 4, 130
AnalyzerFactory = Callable[[str, float, float], Analyzer]  # (mode, alpha, beta) -> Analyzer


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


def has_concurrent_baseline(step: Step) -> bool:
    """Whether the baseline still serves live traffic beside the candidate in this step.

    Without it (canary 100%, the blue/green switch) new samples cannot be compared: the candidate
    would be measured under all the load against a baseline measured earlier under part of it.
    """
    return step.candidate_weight < 100 or bool(step.matches)


def phase_of(step: Step) -> str:
    """The analysis mode of a step: paired shadow comparison, or unpaired arms."""
    return "shadow" if step.kind == "shadow" else "canary"


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while routes are rolled back, so a second Ctrl-C cannot cut it short."""
    blocked = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class Controller:
    """Runs one experiment against a mesh, a live sample source and per-phase analyzers."""

    def __init__(
        self,
        experiment: Experiment,
        *,
        mesh: MeshBackend,
        samples: LiveSamples,
        analyzers: AnalyzerFactory,
        run_dir: Path,
        state: ExperimentState,
        state_file: Path,
        progress: Progress,
        notifier: Notifier | None = None,
        clock: Clock = time.time,
        poll_interval: float = 0.25,
        drain_seconds: float = 1.5,
    ) -> None:
        self.exp = experiment
        self.mesh = mesh
        self.source = samples
        self.make_analyzer = analyzers
        self.run_dir = run_dir
        self.state = state
        self.state_file = state_file
        self.progress = progress
        self.notifier = notifier
        self.clock = clock
        self.poll_interval = poll_interval
        self.drain_seconds = drain_seconds
        self.rows: list[Sample] = []
        self.steps: list[dict[str, Any]] = []
        self._applied = 0
        self._start = clock()
        self._current: Step | None = None
        self._decided: dict[str, Any] | None = None

    # -- edges ---------------------------------------------------------------------------------

    def _event(self, event: str, **detail: Any) -> None:
        record = {
            "time": self.clock(),
            "event": event,
            "experiment": self.exp.metadata.name,
            "strategy": self.exp.spec.strategy,
            "phase": self.state.phase,
            "step": self.state.step,
            **detail,
        }
        append_jsonl(self.run_dir / EVENTS, record)
        self.progress.event(record)
        if self.notifier is not None:
            self.notifier.send(record)

    def _set_state(self, **changes: Any) -> None:
        self.state = self.state.advance(**changes)
        save_state(self.state_file, self.state)

    def _apply(self, step: Step) -> float:
        docs = render_step(self.exp, step)
        self._applied += 1
        path = self.run_dir / MANIFESTS / step_filename(self._applied, step.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(to_yaml(docs), encoding="utf-8")
        began = self.clock()
        self.mesh.apply(routing_plan(self.exp, step))
        took = self.clock() - began
        self._current = step
        self._set_state(step=step.name)
        self._event(
            "step-applied",
            label=step.label,
            weight=step.candidate_weight,
            mirror=step.mirror_percent,
            apply_ms=round(1000 * took, 1),
        )
        return took

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Run to the end; always leaves routing on the baseline unless promoted (or held)."""
        self._set_state(phase="running")
        self._event("started", target=self.state.target)
        try:
            outcome = self._run_steps()
        except KeyboardInterrupt:
            outcome = self._abandon(
                "interrupted", "interrupted by Ctrl-C or SIGTERM; rolled back", EXIT_INTERRUPTED
            )
        except ConfigError:
            self._abandon("failed", "bad input; rolled back", 2)
            raise
        except MeshlabError as exc:
            outcome = self._abandon("failed", f"{exc}; rolled back", EXIT_INFRA)
        except Exception as exc:
            outcome = self._abandon(
                "failed", f"internal error {type(exc).__name__}: {exc}; rolled back", EXIT_INFRA
            )
            raise
        finally:
            self.source.stop()
        return outcome

    def _phases(self) -> int:
        return len({phase_of(s) for s in plan(self.exp)})

    def _run_steps(self) -> Outcome:
        limits = self.exp.spec.limits
        analysis = self.exp.spec.analysis
        share = self._phases()
        analyzer: Analyzer | None = None
        mode = ""
        snapshot: Snapshot | None = None
        for step in plan(self.exp):
            if phase_of(step) != mode:
                mode = phase_of(step)
                analyzer = self.make_analyzer(mode, analysis.alpha / share, analysis.beta / share)
            assert analyzer is not None
            concurrent = has_concurrent_baseline(step)
            if not concurrent and (snapshot is None or snapshot.verdict != "promote"):
                # All traffic to the candidate needs the evidence first; this step adds none.
                return self._inconclusive(
                    snapshot, f"step {step.name} ({step.label}) needs a promote verdict first"
                )
            self._apply(step)
            step_start, step_rows = self.clock(), 0
            counts = {"baseline": 0, "candidate": 0}
            outcome = "limit"
            while True:
                raise_if_interrupted()
                batch = self.source.poll(self.poll_interval)
                if batch:
                    self.rows.extend(batch)
                    step_rows += sum(1 for s in batch if not s.mirrored)
                    for s in batch:
                        counts[s.arm] += 1
                    if concurrent:
                        analyzer.update(batch)
                snapshot = analyzer.snapshot()
                now = self.clock()
                self._history(step, snapshot, now)
                self.progress.look(
                    step.label,
                    step.candidate_weight,
                    step.mirror_percent,
                    snapshot,
                    now - step_start,
                    limits.max_duration,
                )
                if snapshot.verdict == "abort":
                    self._mark_decision()
                    self._record_step(step, step_start, counts, "abort")
                    return self._abort(snapshot)
                if snapshot.verdict == "promote" and step_rows >= limits.min_samples:
                    if concurrent:
                        self._mark_decision()
                    outcome = "promote"
                    break
                if now - step_start >= limits.max_duration:
                    break
                if now - self._start >= limits.experiment_max_duration:
                    self._record_step(step, step_start, counts, "experiment limit")
                    return self._inconclusive(
                        snapshot, "the experiment reached experimentMaxDuration undecided"
                    )
                if self.source.finished and not batch:
                    self._record_step(step, step_start, counts, "load ended")
                    return self._inconclusive(snapshot, "the load ended before a decision")
            self._record_step(step, step_start, counts, outcome)
            self._event("step-ended", outcome=outcome, requests=counts)
            if mode == "shadow" and outcome != "promote":
                # The shadow verdict gates what follows: no live traffic without it.
                return self._inconclusive(snapshot, "the shadow test ended without a decision")
        assert snapshot is not None
        if snapshot.verdict == "promote":
            self._apply(promoted())
            self._set_state(phase="promoted", detail="all traffic on the candidate")
            self._event("promoted")
            return self._outcome(
                "promote", "every metric was shown to be within its tolerance", snapshot
            )
        return self._inconclusive(snapshot, "the last step ended without a decision")

    # -- endings ---------------------------------------------------------------------------------

    def _history(self, step: Step, snapshot: Snapshot, now: float) -> None:
        append_jsonl(
            self.run_dir / HISTORY,
            {
                "time": round(now - self._start, 3),
                "step": step.name,
                "verdict": snapshot.verdict,
                "n_baseline": snapshot.n_baseline,
                "n_candidate": snapshot.n_candidate,
                "metrics": snapshot.metrics,
            },
        )

    def _record_step(self, step: Step, start: float, counts: dict[str, int], outcome: str) -> None:
        self.steps.append(
            {
                "step": step.name,
                "label": step.label,
                "weight": step.candidate_weight,
                "mirror": step.mirror_percent,
                "duration_s": round(self.clock() - start, 3),
                "requests": dict(counts),
                "outcome": outcome,
            }
        )

    def _mark_decision(self) -> None:
        """Record where the deciding look stood: the last sample used, and its time since the first.

        Taken at the look itself, before a rollback's drain adds the requests still in flight.
        """
        if not self.rows:
            self._decided = {"at_request": 0, "at_time": 0.0}
            return
        stamps = [s.timestamp for s in self.rows]
        self._decided = {
            "at_request": len(self.rows) - 1,
            "at_time": round(max(stamps) - min(stamps), 3),
        }

    def _outcome(
        self,
        verdict: VerdictName,
        reason: str,
        snapshot: Snapshot | None,
        rollback_info: dict[str, Any] | None = None,
        code: int | None = None,
    ) -> Outcome:
        return Outcome(
            verdict,
            EXIT[verdict] if code is None else code,
            reason,
            self.state.step,
            snapshot,
            self._decided if verdict != "inconclusive" else None,
            rollback_info,
            self.steps,
        )

    def _rollback(self) -> dict[str, Any]:
        """Roll back now; keep reading samples briefly to time the last candidate-served request."""
        decided = self.clock()
        with signals_deferred():
            self.mesh.rollback()
        applied = self.clock()
        self._current = rollback()
        self._set_state(step="rollback")
        append_path = self.run_dir / MANIFESTS / step_filename(self._applied + 1, "rollback")
        append_path.parent.mkdir(parents=True, exist_ok=True)
        append_path.write_text(to_yaml(render_step(self.exp, rollback())), encoding="utf-8")
        deadline = applied + self.drain_seconds
        try:
            while self.clock() < deadline and not self.source.finished:
                self.rows.extend(self.source.poll(self.poll_interval))
        except KeyboardInterrupt:
            pass  # routes are already back on the baseline; only the timing is cut short
        ends = [
            s.timestamp + s.latency_ms / 1000
            for s in self.rows
            if s.arm == "candidate"
            and not s.mirrored
            and s.timestamp + s.latency_ms / 1000 >= decided
        ]
        last = max(ends, default=decided)
        return {
            "decided_at": decided,
            "applied_at": applied,
            "apply_ms": round(1000 * (applied - decided), 1),
            "decision_to_last_candidate_ms": round(1000 * max(0.0, last - decided), 1),
            "candidate_requests_after_decision": len(ends),
        }

    def _abort(self, snapshot: Snapshot) -> Outcome:
        info = self._rollback()
        reason = "; ".join(snapshot.reasons) or "a metric was shown to be worse than the baseline"
        self._set_state(phase="aborted", detail=reason)
        self._event("aborted", reason=reason, **info)
        return self._outcome("abort", reason, snapshot, info)

    def _inconclusive(self, snapshot: Snapshot | None, why: str) -> Outcome:
        policy = self.exp.spec.limits.on_inconclusive
        if policy == "promote":
            self._apply(promoted())
            self._set_state(phase="promoted", detail=f"{why}; promoted by onInconclusive: promote")
            self._event("promoted", reason=why)
            return self._outcome("inconclusive", f"{why}; promoted by policy", snapshot, code=3)
        info = None
        if policy == "rollback":
            info = self._rollback()
        self._set_state(phase="inconclusive", detail=f"{why}; onInconclusive: {policy}")
        self._event("inconclusive", reason=why, policy=policy)
        return self._outcome("inconclusive", f"{why} (onInconclusive: {policy})", snapshot, info)

    def _abandon(self, phase: str, reason: str, code: int) -> Outcome:
        """Roll back after an error or interrupt; never raises from the rollback itself."""
        info: dict[str, Any] | None = None
        try:
            info = self._rollback()
            phase_done = phase
        except Exception as exc:  # the mesh is broken too: say so, loudly, in the state
            reason = f"{reason}; ROLLBACK FAILED: {exc} — run 'meshlab rollback'"
            phase_done = "failed"
        self._set_state(
            phase="rolled-back" if phase_done == "interrupted" else "failed", detail=reason
        )
        self._event(phase_done, reason=reason)
        return self._outcome("inconclusive", reason, None, info, code=code)
