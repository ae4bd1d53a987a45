"""Prediction counts for the divergence metrics: per-arm label counts and paired disagreements.

:class:`Categories` counts each arm's prediction categories (canary: the TV distance between the
arms' distributions); :class:`Pairs` matches the two copies of a request by ``request_id`` and
counts the pairs whose predictions differ (shadow). Numbers are binned to ``epsilon``; JSON
``true`` is not the number 1. Used by :class:`meshlab.stats.Comparison` and the replay.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

import numpy as np
import numpy.typing as npt

from meshlab.stats.arrival import Queue


def _prediction_key(value: Any, epsilon: float) -> Hashable:
    """A hashable category for a parsed JSON prediction (numbers binned to ``epsilon``)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return ("num", float(math.floor(value / epsilon) if epsilon > 0 else value))
    return ("json", repr(value))


def predictions_differ(a: Any, b: Any, epsilon: float) -> bool:
    """Whether two parsed predictions differ (numbers: ``|a - b| > epsilon``, else inequality)."""
    if isinstance(a, bool) or isinstance(b, bool):  # JSON true is not the number 1
        return type(a) is not type(b) or a != b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(float(a) - float(b)) > epsilon
    return bool(a != b)


class Categories:
    """Per-arm counts of prediction categories (canary divergence)."""

    def __init__(self, epsilon: float) -> None:
        self.epsilon = epsilon
        self.codes: dict[Hashable, int] = {}
        self.counts = np.zeros((2, 0), dtype=np.int64)

    def add(
        self, arm: npt.NDArray[np.int8], predictions: npt.NDArray[np.object_]
    ) -> npt.NDArray[np.int64]:
        """Count the rows' predictions; returns each row's category code (-1: no prediction)."""
        keep = np.array([p is not None for p in predictions], dtype=bool)
        out = np.full(keep.size, -1, dtype=np.int64)
        if not keep.any():
            return out
        codes = out[keep] = self._codes(predictions[keep].tolist())
        if len(self.codes) > self.counts.shape[1]:
            grown = np.zeros((2, len(self.codes)), dtype=np.int64)
            grown[:, : self.counts.shape[1]] = self.counts
            self.counts = grown
        size = self.counts.shape[1]
        self.counts += np.bincount(
            arm[keep].astype(np.int64) * size + codes, minlength=2 * size
        ).reshape(2, size)
        return out

    def _codes(self, values: list[Any]) -> npt.NDArray[np.int64]:
        table, eps = self.codes, self.epsilon
        kinds = set(map(type, values))
        if kinds <= {int, float}:  # fast path: numeric predictions, binned in numpy
            x = np.asarray(values, dtype=np.float64)
            uniq, inverse = np.unique(np.floor(x / eps) if eps > 0 else x, return_inverse=True)
            known = [table.setdefault(("num", float(u)), len(table)) for u in uniq.tolist()]
            return np.asarray(np.asarray(known, dtype=np.int64)[inverse], dtype=np.int64)
        if kinds == {str}:  # fast path: labels are their own keys, coded in first-seen order
            for v in dict.fromkeys(values):  # the distinct labels, in C
                table.setdefault(v, len(table))
            return np.fromiter(map(table.__getitem__, values), dtype=np.int64, count=len(values))
        return np.fromiter(
            (table.setdefault(_prediction_key(v, eps), len(table)) for v in values), dtype=np.int64
        )


class LabelPairs:
    """The k-th labelled candidate row paired with the k-th labelled reference row, in the order
    rows are added (the canary TV distance's bets, :func:`meshlab.stats.bets.tv_verdicts`):
    ``joint[c, r]`` counts the pairs whose candidate row has category ``c`` and reference row
    ``r`` (codes of the metric's :class:`Categories`, growing as labels appear)."""

    def __init__(self) -> None:
        self.joint = np.zeros((0, 0), dtype=np.int64)
        self._queues = (Queue(), Queue())  # reference, candidate

    @property
    def pairs(self) -> int:
        return int(self.joint.sum())

    def add(self, arm: npt.NDArray[np.integer], codes: npt.NDArray[np.int64]) -> None:
        """Rows in order: ``arm`` 0 (reference) or 1 (candidate), ``codes`` (-1: unlabelled)."""
        labelled = codes >= 0
        ref, cand = self._queues
        ref.push(codes[labelled & (arm == 0)])
        cand.push(codes[labelled & (arm == 1)])
        k = min(ref.size, cand.size)
        size = max(self.joint.shape[0], int(codes.max()) + 1 if codes.size else 0)
        if size > self.joint.shape[0]:
            grown = np.zeros((size, size), dtype=np.int64)
            grown[: self.joint.shape[0], : self.joint.shape[1]] = self.joint
            self.joint = grown
        if k:
            flat = cand.take(k) * size + ref.take(k)
            self.joint += np.bincount(flat, minlength=size * size).reshape(size, size)


class Pairs:
    """Paired disagreement counts (shadow divergence), matching rows by request_id."""

    def __init__(self, epsilon: float) -> None:
        self.epsilon = epsilon
        self.waiting: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
        self.pairs = 0
        self.differ = 0

    def add(
        self,
        side: npt.NDArray[np.int8],
        ids: npt.NDArray[np.str_],
        predictions: npt.NDArray[np.object_],
    ) -> None:
        for s, rid, pred in zip(side.tolist(), ids.tolist(), predictions.tolist(), strict=True):
            other = self.waiting[1 - s]
            if rid in other:
                mate = other.pop(rid)
                if pred is not None and mate is not None:
                    self.pairs += 1
                    self.differ += predictions_differ(pred, mate, self.epsilon)
            else:
                self.waiting[s][rid] = pred
