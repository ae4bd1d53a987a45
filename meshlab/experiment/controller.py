"""The experiment loop: start up, apply a step, feed live samples to the analysis, decide, repeat.

For each step of the plan the controller applies the routes, then looks at the analysis after every
batch of samples: **abort** rolls back at once (and measures how long the candidate kept serving);
**promote** moves to the next step and, after the last, to the ``promoted`` state, but only on fresh
evidence: the step itself must have had ``minSamples`` requests, with samples of both compared
arms. **No data, no progress**: the weight never increases on a verdict reached before the step
(issue 18). A step that reaches ``maxDuration`` without that evidence holds while the metrics
source reports an outage (its grace period, and ``experimentMaxDuration``, bound the hold) and
otherwise ends by ``onInconclusive`` saying what was missing ("no candidate samples in step 2",
"Prometheus at ... unreachable since T"); a step that reaches ``maxDuration`` with its evidence
but undecided ends by ``onInconclusive`` too (it used to move on, which raised the weight without
a promote verdict). ``onInconclusive`` defaults to roll back, exit 3. A metrics source or load
generator that fails for good ends the run as an infrastructure failure (exit 4) that keeps every
step and the last analysis. A step without a concurrent baseline (canary 100%, the blue/green
switch) is entered only on a promote verdict and runs as a soak of ``minSamples`` requests whose
samples are recorded but not analysed: with no baseline beside it, they would compare the candidate
under all the load with a baseline measured under part of it.

Every way out rolls back first (traffic is on the baseline whenever meshlab is not in control):
errors, faults of the mesh (see :mod:`meshlab.experiment.faults`) and interrupts, start-up
included (the start-up runs inside :meth:`Controller.run`). Each ending (see
:mod:`meshlab.experiment.endings`) runs with signals held and happens once: the rollback, its
manifest, the final event and the state file's final phase are written before a signal can act.

One analyzer runs per phase (shadow, then canary for ``then: canary``); its alpha and beta are the
experiment's divided by the number of phases (Bonferroni), so the guarantees hold for the whole run.

With ``spec.control`` (issue 13) every step is applied with the control arm in its plan
(:func:`meshlab.manifests.step_plan`), the analyzers compare the candidate with the control, and a
step's fresh evidence needs control samples where it otherwise needs baseline ones; the control's
requests are counted per step beside the other arms'.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from meshlab.errors import ConfigError, MeshlabError
from meshlab.experiment import signals
from meshlab.experiment.endings import EXIT, EXIT_INFRA, EXIT_INTERRUPTED, Endings, Outcome
from meshlab.experiment.faults import judge_faults, mesh_faults, missing_evidence, outage_of
from meshlab.experiment.journal import Journal
from meshlab.experiment.notify import Notifier
from meshlab.experiment.ports import (
    Analyzer,
    Clock,
    LiveSamples,
    Progress,
    Snapshot,
    silence_of,
)
from meshlab.experiment.state import ExperimentState
from meshlab.manifests import Step, plan, promoted, render_step, step_plan
from meshlab.mesh import MeshBackend
from meshlab.samples import Sample
from meshlab.spec import Experiment

AnalyzerFactory = Callable[[str, float, float], Analyzer]  # (mode, alpha, beta) -> Analyzer
StartUp = Callable[["Controller"], None]  # starts the edges, attaching each as soon as it exists


def has_concurrent_baseline(step: Step) -> bool:
    """Whether the baseline still serves live traffic beside the candidate in this step.

    Without it (canary 100%, the blue/green switch) new samples cannot be compared: the candidate
    would be measured under all the load against a baseline measured earlier under part of it.
    """
    return step.candidate_weight < 100 or bool(step.matches)


def phase_of(step: Step) -> str:
    """The analysis mode of a step: paired shadow comparison, or unpaired arms."""
    return "shadow" if step.kind == "shadow" else "canary"


class Controller(Endings):
    """Runs one experiment against a mesh, a live sample source and per-phase analyzers.

    ``mesh``, ``samples`` and ``analyzers`` may be left out and attached by the ``start_up``
    callable given to :meth:`run`, so that an interrupt during start-up ends like any other.
    """

    def __init__(
        self,
        experiment: Experiment,
        *,
        mesh: MeshBackend | None = None,
        samples: LiveSamples | None = None,
        analyzers: AnalyzerFactory | None = None,
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
        self.journal = Journal(
            experiment,
            run_dir=run_dir,
            state=state,
            state_file=state_file,
            progress=progress,
            notifier=notifier,
            clock=clock,
        )
        self.progress = progress
        self.clock = clock
        self.poll_interval = poll_interval
        self.drain_seconds = drain_seconds
        self.rows: list[Sample] = []
        self.steps: list[dict[str, Any]] = []
        self._start = clock()
        self._decided: dict[str, Any] | None = None
        self._ended: Outcome | None = None
        self._last: Snapshot | None = None

    @property
    def state(self) -> ExperimentState:
        return self.journal.state

    def _apply(self, step: Step) -> float:
        assert self.mesh is not None
        docs = render_step(self.exp, step)
        self.journal.manifests(step, docs)
        began = self.clock()
        self.mesh.apply(step_plan(self.exp, step))
        took = self.clock() - began
        self.journal.set_state(step=step.name)
        self.journal.event(
            "step-applied",
            label=step.label,
            weight=step.candidate_weight,
            mirror=step.mirror_percent,
            apply_ms=round(1000 * took, 1),
        )
        return took

    # -- the loop --------------------------------------------------------------------------------

    def run(self, start_up: StartUp | None = None) -> Outcome:
        """Start up (if asked), run to the end; routing ends on the baseline unless promoted/held.

        Bad input and internal errors are re-raised after the rollback (the CLI prints them).
        """
        failure: BaseException | None = None
        try:
            try:
                outcome = self._run(start_up)
            except BaseException as exc:  # every way out rolls back first
                failure = exc
                outcome = self._end_by(exc)
        except KeyboardInterrupt:
            # The one KeyboardInterrupt of the sequence landed between an error and its ending.
            outcome = self._end_by(KeyboardInterrupt())
        finally:
            with signals.deferred():
                if self.source is not None:
                    self.source.stop()
        if isinstance(failure, ConfigError) or (
            isinstance(failure, Exception) and not isinstance(failure, MeshlabError)
        ):
            raise failure
        return outcome

    def end_interrupted(self) -> Outcome:
        """End by an interrupt that reached the caller before :meth:`run` could catch it."""
        return self._end_by(KeyboardInterrupt())

    def _run(self, start_up: StartUp | None) -> Outcome:
        signals.raise_if_interrupted()
        if start_up is not None:
            start_up(self)
            signals.raise_if_interrupted()
        self.journal.set_state(phase="running")
        self.journal.event("started", target=self.state.target)
        return self._run_steps()

    def _phases(self) -> int:
        return len({phase_of(s) for s in plan(self.exp)})

    def _run_steps(self) -> Outcome:
        assert self.source is not None and self.make_analyzer is not None
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
            if self.exp.spec.control is not None:
                counts["control"] = 0
            held = False
            while True:
                signals.raise_if_interrupted()
                try:
                    batch = self.source.poll(self.poll_interval)
                except ConfigError:
                    raise
                except MeshlabError as exc:  # the metrics source or the load failed for good
                    self._record_step(step, step_start, counts, "infrastructure failure")
                    return self._abandon(
                        "failed", f"infrastructure failure: {exc}", EXIT_INFRA, snapshot
                    )
                if batch:
                    self.rows.extend(batch)
                    step_rows += sum(1 for s in batch if not s.mirrored)
                    for s in batch:
                        counts[s.arm] = counts.get(s.arm, 0) + 1
                    if concurrent:
                        analyzer.update(batch)
                fault = judge_faults(mesh_faults(self.mesh), self.rows)
                if fault is not None:
                    self._mark_decision()
                    self._record_step(step, step_start, counts, f"{fault.role} fault")
                    return self._fault(fault, snapshot)
                snapshot = self._last = analyzer.snapshot()
                now = self.clock()
                self.journal.look(step, snapshot, now - self._start)
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
                missing = missing_evidence(
                    step.name,
                    counts,
                    step_rows,
                    limits.min_samples,
                    concurrent,
                    outage_of(self.source),
                    reference="control" if self.exp.spec.control is not None else "baseline",
                )
                if snapshot.verdict == "promote" and missing is None:
                    if concurrent:
                        self._mark_decision()
                    break
                if now - self._start >= limits.experiment_max_duration:
                    self._record_step(step, step_start, counts, "experiment limit")
                    why = "the experiment reached experimentMaxDuration undecided"
                    why = f"{why}: {missing}" if missing else why
                    return self._inconclusive(snapshot, self._undecided(why))
                if now - step_start >= limits.max_duration:
                    outage = outage_of(self.source)
                    if missing is not None and outage is not None:
                        # No data, no progress: hold; the source's grace period ends an outage.
                        if not held:
                            held = True
                            self.journal.event("step-held", step=step.name, reason=missing)
                    else:
                        self._record_step(step, step_start, counts, "limit")
                        self.journal.event("step-ended", outcome="limit", requests=counts)
                        return self._inconclusive(
                            snapshot,
                            self._undecided(
                                missing
                                or f"step {step.name} ({step.label}) reached maxDuration "
                                f"undecided after {step_rows} requests"
                            ),
                        )
                if self.source.finished and not batch:
                    self._record_step(step, step_start, counts, "load ended")
                    why = "the load ended before a decision"
                    why = f"{why}: {missing}" if missing else why
                    return self._inconclusive(snapshot, self._undecided(why))
            outcome = "promote"
            self._record_step(step, step_start, counts, outcome)
            self.journal.event("step-ended", outcome=outcome, requests=counts)
        # Every step ended on a promote verdict on its own fresh data (any other way returned).
        assert snapshot is not None and snapshot.verdict == "promote"
        self._apply(promoted())
        with signals.deferred():
            self.journal.set_state(phase="promoted", detail="all traffic on the candidate")
            self.journal.event("promoted")
            return self._ending(
                "promote", "every metric was shown to be within its tolerance", snapshot
            )

    # -- bookkeeping -----------------------------------------------------------------------------

    def _undecided(self, why: str) -> str:
        """An undecided ending's reason, with the live source's word on what went quiet."""
        quiet = silence_of(self.source)
        return f"{why}; {quiet}" if quiet else why

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


__all__ = ["EXIT", "EXIT_INFRA", "EXIT_INTERRUPTED", "Controller", "Outcome", "StartUp"]
