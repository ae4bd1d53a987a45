"""Shadow error outcomes paired by request_id: the counts the paired error-rate test reads.

In shadow mode the reference row (production's primary ``arm 0, mirrored 0``, or with a control
the control's mirrored copy ``arm 2, mirrored 1``) and the candidate's mirrored copy
(``arm 1, mirrored 1``) answer the same request and carry its ``request_id``. :class:`ErrorPairs`
matches them as they arrive (a pair may straddle batches) and counts the complete pairs, the
discordant ones (only the reference failed, only the candidate failed) and the candidate's
failed rows still waiting for their reference.

Incomplete pairs, and why none of them can buy a promote:

* a reference row without its copy is not counted: with ``mirrorPercent`` below 100 most
  primaries have no copy by design, and a missing copy carries no candidate outcome;
* a candidate row without its reference is counted, while it waits, as a candidate-only failure
  when it failed (:attr:`ErrorPairs.unmatched_failures`, used on the promote side only);
* no complete pair means no data: the metric's interval is (-inf, inf), never a pass. A candidate
  whose copies never arrive therefore never promotes (and the controller's missing-evidence
  rule, :func:`meshlab.experiment.faults.missing_evidence`, names the missing arm).
* a row with an empty ``request_id`` never pairs.

A second row of the same ``request_id`` on the same side replaces the waiting one (as the
divergence pairing does). ``Comparison`` and the replay (:mod:`meshlab.stats.replay`) both count
through :meth:`ErrorPairs.add`, whose per-row increments the replay sums per look, so the two
agree bit for bit.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from meshlab.stats import tolbets

IntArray = npt.NDArray[np.int64]
FIELDS = ("pairs", "only_reference", "only_candidate", "unmatched_failures", "both_failed")


class ErrorPairs:
    """Running counts of paired shadow error outcomes (side 0 = reference, 1 = candidate)."""

    def __init__(self) -> None:
        self.waiting: tuple[dict[str, bool], dict[str, bool]] = ({}, {})
        self.counts = np.zeros(len(FIELDS), dtype=np.int64)
        # complete pairs per snapshot (meshlab.stats.tolbets) and level (bets.PAIRS: candidate
        # failed x 2 + reference failed), in the order they completed
        self.snapshots = np.zeros((tolbets.SNAPSHOTS, 4), dtype=np.int64)

    @property
    def pairs(self) -> int:
        return int(self.counts[0])

    @property
    def only_reference(self) -> int:
        return int(self.counts[1])

    @property
    def only_candidate(self) -> int:
        return int(self.counts[2])

    @property
    def unmatched_failures(self) -> int:
        return int(self.counts[3])

    def add(
        self,
        side: npt.NDArray[np.int64],
        ids: npt.NDArray[np.str_],
        failed: npt.NDArray[np.bool_],
    ) -> IntArray:
        """Add rows in arrival order; returns each row's increments of :data:`FIELDS`, (rows, 4)."""
        size = side.size
        # plain lists in the loop (a numpy item assignment costs several times a list's)
        done, only_ref, only_cand, unmatched = [0] * size, [0] * size, [0] * size, [0] * size
        both = [0] * size
        waiting = self.waiting
        for i, (s, rid, f) in enumerate(
            zip(side.tolist(), ids.tolist(), failed.tolist(), strict=True)
        ):
            if not rid:  # cannot pair: a failed candidate row stays unmatched for good
                unmatched[i] = int(s == 1 and f)
                continue
            other = waiting[1 - s]
            if rid in other:
                mate = other.pop(rid)
                ref, cand = (f, mate) if s == 0 else (mate, f)
                done[i] = 1
                only_ref[i] = int(ref and not cand)
                only_cand[i] = int(cand and not ref)
                both[i] = int(cand and ref)
                unmatched[i] = -int(s == 0 and mate)  # the waiting failed copy found its reference
                continue
            mine = waiting[s]
            if s == 1:  # a replaced waiting failure no longer counts
                unmatched[i] = int(f) - int(mine.get(rid, False))
            mine[rid] = f
        steps = np.array([done, only_ref, only_cand, unmatched, both], dtype=np.int64).T
        levels = pair_levels(steps)
        snap = tolbets.snapshot_of(self.pairs + np.arange(levels.size))
        np.add.at(self.snapshots, (snap, levels), 1)
        self.counts += steps.sum(axis=0)
        return steps


def pair_levels(steps: IntArray) -> IntArray:
    """The :data:`~meshlab.stats.bets.PAIRS` level of each pair completed in ``steps`` (rows x
    :data:`FIELDS`, from :meth:`ErrorPairs.add`), in order."""
    done = steps[steps[:, 0] == 1]
    return np.asarray(2 * done[:, 2] + done[:, 1] + 3 * done[:, 4], dtype=np.int64)
