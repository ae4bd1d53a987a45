"""Ctrl-C and SIGTERM as one interrupt sequence that cannot be lost, re-entered or doubled.

The rules (issue 11):

- The handler is async-signal-safe in Python's sense: it takes no lock and does no I/O. It only
  counts the signal in plain attributes of a module object (a ``threading.Event`` would take a
  lock that a second signal, run between two bytecodes of the first handler, re-enters forever).
- It raises ``KeyboardInterrupt`` at most once per sequence, to break out of a blocking call;
  every later signal is only counted. So once the first interrupt is being handled, nothing can
  cut the path from "interrupted" to "rollback applied and recorded" short.
- A raise can be swallowed (a signal landing in an at-fork hook, a ``__del__``, a weakref
  callback): Python would print it as "Exception ignored ... Traceback". meshlab's
  ``sys.unraisablehook`` drops it silently and re-arms the sequence, so the next signal raises
  again; the controller also checks :func:`raise_if_interrupted` at every look.
- :func:`deferred` holds signals around the rollback and its bookkeeping, for a *first* signal
  that arrives while meshlab is already rolling back (after an abort or an error): the main
  thread blocks SIGINT/SIGTERM (``pthread_sigmask``) and, because another thread may still take
  the signal and Python then runs the handler in the main thread anyway, the handler sees the
  section and only counts. The interrupt stays pending for the next check.
- Once an experiment has ended (:func:`spend`), signals are only counted: the recording of the
  ending, the samples, ``result.json`` and the closing of every process cannot be cut short.
- :func:`skippable` marks work that a user in a hurry may skip (the report): a third signal
  within :data:`IMPATIENT_S` seconds raises :class:`Hurry` there, and only there.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
IMPATIENT_S = 5.0  # three signals within this many seconds: skip what may be skipped


class Hurry(BaseException):
    """The user signalled three times in a few seconds: skip the optional work (the report)."""


class _Sequence:
    """The interrupt sequence of this process. Written by the handler without any lock."""

    __slots__ = ("count", "deferred", "first_signal", "raised", "recent", "skippable", "spent")

    def __init__(self) -> None:
        self.count = 0
        self.first_signal = 0
        self.raised = False
        self.deferred = 0
        self.skippable = 0
        self.recent: tuple[float, ...] = ()
        self.spent = False


SEQUENCE = _Sequence()


def _handler(signum: int, frame: FrameType | None) -> None:
    # No lock, no I/O, no allocation beyond a small tuple: safe however often it re-enters.
    seq = SEQUENCE
    seq.count += 1
    if seq.count == 1:
        seq.first_signal = signum
    seq.recent = (*seq.recent[-2:], time.monotonic())
    if seq.skippable:  # optional work after the outcome: only a hurry cuts it short
        if _impatient(seq.recent):
            seq.skippable = 0  # one Hurry per skippable section
            raise Hurry
        return
    if seq.raised or seq.deferred:
        return
    seq.raised = True
    raise KeyboardInterrupt


def _impatient(recent: tuple[float, ...]) -> bool:
    return len(recent) == 3 and recent[-1] - recent[0] <= IMPATIENT_S


def interrupted() -> bool:
    """Whether SIGINT or SIGTERM arrived in this sequence (raised or still pending)."""
    return SEQUENCE.count > 0


def signal_count() -> int:
    """How many signals arrived so far in this sequence."""
    return SEQUENCE.count


def impatient() -> bool:
    """Three signals within :data:`IMPATIENT_S` seconds: the user wants out, report or not."""
    return _impatient(SEQUENCE.recent)


def raise_if_interrupted() -> None:
    """Raise the interrupt whose ``KeyboardInterrupt`` was swallowed, or held by :func:`deferred`."""
    if SEQUENCE.count:
        SEQUENCE.raised = True
        raise KeyboardInterrupt


def _unraisable(unraisable: Any) -> None:
    """Our interrupt, swallowed where Python ignores exceptions: no traceback, and re-armed."""
    kind = unraisable.exc_type
    if kind is not None and issubclass(kind, (KeyboardInterrupt, Hurry)):
        if kind is KeyboardInterrupt and not SEQUENCE.spent:
            SEQUENCE.raised = False  # it never reached the code it was meant for
        return
    sys.__unraisablehook__(unraisable)


def installed() -> bool:
    """Whether both signals go through this module's handler."""
    return all(signal.getsignal(s) is _handler for s in SIGNALS)


def install() -> None:
    """Route SIGINT and SIGTERM through the counting handler (main thread only).

    Installed explicitly for SIGINT too: a shell that starts meshlab in the background sets SIGINT
    to ignored, and Python would then never raise ``KeyboardInterrupt``.
    """
    for sig in SIGNALS:
        signal.signal(sig, _handler)
    sys.unraisablehook = _unraisable


def reset() -> None:
    """Start a new sequence (tests and library callers running several experiments)."""
    global SEQUENCE
    SEQUENCE = _Sequence()


def hold() -> None:
    """Block SIGINT/SIGTERM for good in this thread (meshlab has finished and is exiting).

    The interpreter resets handlers to the default while it shuts down; a signal arriving then
    would kill the process by signal instead of letting it exit with its code.
    """
    spend()
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)


def spend() -> None:
    """The interrupt sequence is over (the experiment ended, or meshlab is exiting).

    From now on signals are only counted: nothing can cut the recording of the ending short, and
    no ``KeyboardInterrupt`` reaches an atexit hook as a traceback.
    """
    SEQUENCE.spent = True
    SEQUENCE.raised = True


def rearm() -> None:
    """Allow one ``KeyboardInterrupt`` again (a new experiment) unless a signal already came."""
    if SEQUENCE.count == 0:
        SEQUENCE.spent = False
        SEQUENCE.raised = False


@contextlib.contextmanager
def interrupts_handled() -> Iterator[None]:
    """Make sure the handler is installed for the block.

    Under the ``meshlab`` entry point it already is, and the sequence carries on (a signal that
    arrived during start-up is not forgotten). Called from a library or a test, the block gets a
    fresh sequence, and the previous handlers and sequence come back afterwards: the block's
    signals were handled by it and do not interrupt whatever the caller runs next.
    """
    global SEQUENCE
    if installed():
        yield
        return
    previous: dict[int, Any] = {s: signal.getsignal(s) for s in SIGNALS}
    previous_hook = sys.unraisablehook
    previous_sequence = SEQUENCE
    reset()
    install()
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.unraisablehook = previous_hook
        SEQUENCE = previous_sequence


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM for the block: no ``KeyboardInterrupt`` inside it, none lost after it.

    The section counter goes up *before* the mask is set and down *after* it is restored, so a
    signal that is delivered the moment the mask lifts still finds the section and only counts.
    """
    SEQUENCE.deferred += 1
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        SEQUENCE.deferred -= 1


@contextlib.contextmanager
def skippable() -> Iterator[bool]:
    """Run optional work; yields False (skip it) if the user is already impatient.

    Inside the block a signal is only counted, except the third within :data:`IMPATIENT_S`
    seconds: it raises :class:`Hurry`, which the block's exit swallows, so the work is cut short
    and nothing else is.
    """
    if impatient():
        yield False
        return
    SEQUENCE.skippable += 1
    try:
        yield True
    except Hurry:
        pass
    finally:
        SEQUENCE.skippable = 0
