"""Canary requests grouped in arrival order for the error-rate bets (:mod:`meshlab.stats.bets`).

The split the plan fixes before any data (``Comparison(candidate_share=...)``) sets the group
(:func:`grouping_for`): at a candidate share ``w <= 1/2`` each candidate request is grouped
with the next ``round((1 - w) / w)`` reference requests (19 at 5%), above 1/2 the other way
round, so a group uses every request of both arms at the planned split and
``Var Z = p (1 - p) (1/c + 1/r)`` is the two-arm difference's own variance. Requests are taken
in the order their rows arrive, each batch's rows in :func:`batch_order`: whether a request
lands in a group, and which, never depends on its outcome, so the groups are i.i.d. when each
arm's requests are. :class:`ArrivalGroups` counts groups as rows stream in (the live
comparison, the simulation of bursty worlds) per snapshot of :mod:`meshlab.stats.tolbets`,
:func:`groups_at` the groups' levels and each look's count of them in a recorded file (the
replay).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from meshlab.stats import tolbets
from meshlab.stats.bets import PAIRS, Grouping

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Without grouping (``grouping_for(..., groups=False)``, the calibration's earlier lever) pairs
# use min(n_cand, n_ref) requests, so they paid only at planned shares in this band.
BALANCED = (0.375, 0.625)
MAX_GROUP = 99  # a 1% canary groups each candidate request with 99 reference requests


def grouping_for(share: float | None, groups: bool = True) -> Grouping | None:
    """The grouping at this planned candidate share of the compared requests (None: not known
    in advance, taken as even); ``groups=False``: one-to-one pairs inside :data:`BALANCED`, else
    None (no bets)."""
    w = 0.5 if share is None or not 0.0 < share < 1.0 else share
    if not groups:
        return PAIRS if BALANCED[0] <= w <= BALANCED[1] else None
    many = int(min(MAX_GROUP, max(1, round(max(w, 1 - w) / min(w, 1 - w)))))
    return Grouping(1, many) if w <= 0.5 else Grouping(many, 1)


def batch_order(
    timestamp: npt.ArrayLike,
    request_id: npt.ArrayLike,
    failed: npt.ArrayLike,
    batch: npt.ArrayLike | None = None,
) -> npt.NDArray[np.intp]:
    """The order rows of one batch are grouped in: start time, then request id (then outcome,
    for rows equal in both), so the verdict does not depend on the order within a batch and
    a samples file (start-time order) groups as a live run that received it in one batch. Start
    times and ids do not depend on a request's outcome, so the groups stay i.i.d. ``batch``: the
    batch of each row, for rows of several batches at once (the replay's looks)."""
    keys = [np.asarray(failed), np.asarray(request_id), np.asarray(timestamp)]
    return np.lexsort(keys if batch is None else [*keys, np.asarray(batch)])


class Queue:
    """One arm's rows (failure flags, or label codes) still waiting for a group, oldest first,
    kept in the chunks they came in (a 5% canary's waiting reference rows are never copied
    again)."""

    def __init__(self) -> None:
        self._chunks: list[npt.NDArray[Any]] = []
        self._head = 0  # rows of the first chunk already taken
        self.size = 0

    def push(self, rows: npt.NDArray[Any]) -> None:
        if rows.size:
            self._chunks.append(rows)
            self.size += rows.size

    def take(self, k: int) -> npt.NDArray[Any]:
        out: list[npt.NDArray[Any]] = []
        need = k
        while need:
            chunk = self._chunks[0][self._head :]
            piece = chunk[:need]
            out.append(piece)
            need -= piece.size
            if piece.size == chunk.size:
                self._chunks.pop(0)
                self._head = 0
            else:
                self._head += piece.size
        self.size -= k
        return np.concatenate(out) if len(out) > 1 else out[0]


class ArrivalGroups:
    """The count of groups per snapshot and level (``snapshots``, :mod:`meshlab.stats.tolbets`),
    grouping rows in the order they are added: the first ``c`` candidate rows with the first
    ``r`` reference rows, and so on."""

    def __init__(self, grouping: Grouping = PAIRS) -> None:
        self.grouping = grouping
        self.snapshots = np.zeros((tolbets.SNAPSHOTS, grouping.levels), dtype=np.int64)
        self._queues = (Queue(), Queue())  # reference, candidate

    @property
    def counts(self) -> npt.NDArray[np.int64]:
        """The count of groups at each level."""
        return np.asarray(self.snapshots.sum(axis=0), dtype=np.int64)

    @property
    def groups(self) -> int:
        return int(self.snapshots.sum())

    def add(self, arm: npt.NDArray[np.integer], failed: BoolArray) -> None:
        """Rows in order: ``arm`` 0 (reference) or 1 (candidate), ``failed`` per row."""
        ref, cand = self._queues
        ref.push(failed[arm == 0])
        cand.push(failed[arm == 1])
        g = self.grouping
        k = min(cand.size // g.cand, ref.size // g.ref)
        if k:
            kc = cand.take(k * g.cand).reshape(k, g.cand).sum(axis=1)
            kr = ref.take(k * g.ref).reshape(k, g.ref).sum(axis=1)
            snap = tolbets.snapshot_of(self.groups + np.arange(k))
            np.add.at(self.snapshots, (snap, kc * (g.ref + 1) + kr), 1)


def groups_at(
    arm: npt.NDArray[np.integer],
    failed: BoolArray,
    n_ref: npt.ArrayLike,
    n_cand: npt.ArrayLike,
    grouping: Grouping = PAIRS,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The level of each group in order, and the groups each look has seen (arms with ``n_ref``
    and ``n_cand`` rows), grouping the rows ``arm``/``failed`` (in order) exactly as
    :class:`ArrivalGroups` does."""
    g = grouping
    ref, cand = failed[arm == 0], failed[arm == 1]
    k = min(cand.size // g.cand, ref.size // g.ref)
    kc = cand[: k * g.cand].reshape(k, g.cand).sum(axis=1)
    kr = ref[: k * g.ref].reshape(k, g.ref).sum(axis=1)
    c = np.asarray(n_cand, dtype=np.int64) // g.cand
    r = np.asarray(n_ref, dtype=np.int64) // g.ref
    levels = np.asarray(kc * (g.ref + 1) + kr, dtype=np.int64)
    return levels, np.asarray(np.minimum(c, r), dtype=np.int64)
