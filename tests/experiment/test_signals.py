"""The interrupt sequence (issue 11): counted without locks, raised once, held, skippable; and an
interrupt during start-up ending like any other (controller with a fake mesh and fake clock).

Signals are real (``os.kill`` of this process) inside ``interrupts_handled``, which restores
pytest's handlers afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from meshlab.experiment import signals
from meshlab.experiment.controller import Controller
from meshlab.experiment.progress import QuietProgress
from meshlab.experiment.state import ExperimentState, load_state
from tests.experiment.fakes import FakeClock, FakeMesh, FakeSource, ScriptedAnalyzer
from tests.experiment.test_controller import _experiment


def _kill(sig: int = signal.SIGINT) -> None:
    os.kill(os.getpid(), sig)
    time.sleep(0.01)  # the handler runs at the next bytecode boundary of the main thread


def test_first_signal_raises_once_later_ones_only_count() -> None:
    with signals.interrupts_handled():
        with pytest.raises(KeyboardInterrupt):
            _kill()
        _kill(signal.SIGTERM)
        _kill()
        assert signals.signal_count() == 3 and signals.interrupted()
        with pytest.raises(KeyboardInterrupt):
            signals.raise_if_interrupted()  # the swallowed-raise check still sees it


def test_many_signals_from_another_thread_never_hang_the_handler() -> None:
    """The issue's hang: a second signal re-entering a lock taken by the first handler."""
    with signals.interrupts_handled():
        sender = threading.Thread(target=lambda: [os.kill(os.getpid(), 2) for _ in range(200)])
        with pytest.raises(KeyboardInterrupt):
            sender.start()
            sender.join(10)
            time.sleep(0.05)
        sender.join(10)
        time.sleep(0.05)
        assert not sender.is_alive() and signals.signal_count() >= 1


def test_deferred_holds_the_interrupt_until_checked() -> None:
    with signals.interrupts_handled():
        with signals.deferred():
            _kill()
            _kill(signal.SIGTERM)
        time.sleep(0.02)  # nothing raised on the way out of the section
        assert signals.signal_count() == 2
        with pytest.raises(KeyboardInterrupt):
            signals.raise_if_interrupted()


def test_third_signal_in_a_few_seconds_cuts_only_the_skippable_work() -> None:
    with signals.interrupts_handled():
        signals.spend()  # the experiment has ended: signals only count from here
        done = []
        with signals.skippable() as wanted:
            assert wanted
            _kill()
            _kill()  # two: still only counted, the work goes on
            done.append("half")
            _kill()  # the third within IMPATIENT_S: Hurry, swallowed by the block
            done.append("never")
        assert done == ["half"] and signals.impatient()
        with signals.skippable() as wanted:
            assert not wanted  # already impatient: skip at once


def test_spent_sequence_is_rearmed_only_without_signals() -> None:
    with signals.interrupts_handled():
        signals.spend()
        signals.rearm()
        with pytest.raises(KeyboardInterrupt):
            _kill()
        signals.spend()
        signals.rearm()  # a signal already came: stays spent
        _kill()
        assert signals.signal_count() == 2


def _controller(tmp_path: Path, clock: FakeClock) -> tuple[Controller, Path]:
    state_file = tmp_path / "state.json"
    state = ExperimentState(
        "t", "default", "canary", "fake", "starting", "none", str(tmp_path), 1, clock(), clock()
    )
    controller = Controller(
        _experiment(),
        run_dir=tmp_path,
        state=state,
        state_file=state_file,
        progress=QuietProgress(),
        clock=clock,
        drain_seconds=0.5,
    )
    return controller, state_file


@pytest.mark.parametrize("mesh_started", [True, False])
def test_interrupt_during_start_up_rolls_back_and_records_everything(
    tmp_path: Path, mesh_started: bool
) -> None:
    mesh, clock = FakeMesh(), FakeClock()
    controller, state_file = _controller(tmp_path, clock)

    def start_up(c: Controller) -> None:
        if mesh_started:
            c.mesh = mesh
            c.source = FakeSource(clock, mesh)
        raise KeyboardInterrupt  # Ctrl-C while Locust starts (or while the mesh starts)

    with signals.interrupts_handled():
        outcome = controller.run(start_up)
    assert outcome.exit_code == 130 and outcome.final_step == "rollback"
    assert outcome.reason.startswith("interrupted by Ctrl-C or SIGTERM during start-up")
    assert outcome.reason.endswith("; rolled back")
    assert mesh.applied == (["rollback"] if mesh_started else [])
    assert [p.name for p in (tmp_path / "manifests").glob("*.yaml")] == ["01-rollback.yaml"]
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "interrupted" and events[-1]["rolled_back"] is True
    state = load_state(state_file)
    assert state is not None and (state.phase, state.step) == ("rolled-back", "rollback")
    assert outcome.rollback is not None
    assert ("note" in outcome.rollback) is not mesh_started


def test_interrupt_that_reaches_the_caller_after_the_ending_changes_nothing(
    tmp_path: Path,
) -> None:
    mesh, clock = FakeMesh(), FakeClock()
    controller, state_file = _controller(tmp_path, clock)

    def start_up(c: Controller) -> None:
        c.mesh = mesh
        c.source = FakeSource(clock, mesh, weights={"1": 10})
        c.make_analyzer = lambda mode, a, b: ScriptedAnalyzer(
            lambda n: "abort" if n > 100 else "inconclusive"
        )

    with signals.interrupts_handled():
        outcome = controller.run(start_up)
        again = controller.end_interrupted()
    assert outcome.exit_code == 1 and again is outcome
    state = load_state(state_file)
    assert state is not None and state.phase == "aborted"


def test_interrupt_swallowed_where_python_ignores_exceptions_is_silent_and_rearmed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A signal landing in a ``__del__`` (or an at-fork hook) must not print a traceback."""

    class Victim:
        def __del__(self) -> None:
            _kill()  # the KeyboardInterrupt is raised here, where Python ignores it

    with signals.interrupts_handled():
        Victim()  # collected at once: __del__ runs, the exception goes to sys.unraisablehook
        assert signals.signal_count() == 1
        assert "Traceback" not in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):  # re-armed: the next signal reaches the code
            _kill()


def test_signals_handled_by_a_block_do_not_interrupt_what_runs_after_it() -> None:
    """A library caller's (or a test's) handled interrupt ends with its block: the next run,
    started without the block, is not told it was interrupted (this leaked between tests)."""
    assert not signals.interrupted()
    with signals.interrupts_handled():
        with pytest.raises(KeyboardInterrupt):
            _kill()
        assert signals.interrupted()
    assert not signals.interrupted() and signals.signal_count() == 0
    signals.raise_if_interrupted()  # nothing pending
