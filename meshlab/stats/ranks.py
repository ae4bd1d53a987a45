"""Order statistics of every prefix of a sequence, many at once: a wavelet matrix.

The replay (:mod:`meshlab.stats.replay`) needs, at each of up to tens of thousands of looks, the
histogram bin of the k-th smallest latency among an arm's first ``n`` rows. A cumulative
histogram per look costs O(bins) a look (~23,000 bins). A wavelet matrix over the rows' bins
(Claude, Navarro & Ordonez, "The wavelet matrix: an efficient wavelet tree for large alphabets",
Information Systems 47, 2015) answers "k-th smallest among the first n" in one pass per bit of
the bin index (15 for 23,000 bins), vectorised over all queries, after an O(rows x bits) build:
per look the cost is O(log bins), and the answer is exact (the same bin a cumulative histogram
gives).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


class PrefixRanks:
    """``kth(n, k)``: the k-th smallest (1-based) of ``values[:n]``, per query pair.

    ``values`` are integers in ``[0, size)``; a query with ``k > n`` gets ``size`` (no such
    element) and one with ``k < 1`` gets 0, as counting a cumulative histogram would.
    """

    def __init__(self, values: npt.ArrayLike, size: int) -> None:
        v = np.asarray(values, dtype=np.int64)
        if v.size and (v.min() < 0 or v.max() >= size):
            raise ValueError("values must lie in [0, size)")
        if size > 2**31 - 1:
            raise ValueError("at most 2**31 - 1 distinct values")
        self.size = size
        self.n = int(v.size)
        v = v.astype(np.int32)  # half the memory traffic of the build
        self.bits = max(1, int(size - 1).bit_length())
        self._ones: list[npt.NDArray[np.int32]] = []  # per level: ones among the first i
        self._zeros: list[int] = []  # per level: zeros in the whole level
        for level in range(self.bits - 1, -1, -1):
            bit = (v >> level) & 1
            ones = np.zeros(v.size + 1, dtype=np.int32)
            np.cumsum(bit, out=ones[1:])
            self._ones.append(ones)
            self._zeros.append(int(v.size - ones[-1]))
            v = np.concatenate((v[bit == 0], v[bit == 1]))  # stable: the wavelet matrix order

    def kth(self, n: npt.ArrayLike, k: npt.ArrayLike) -> IntArray:
        n_, k_ = np.broadcast_arrays(np.asarray(n, dtype=np.int64), np.asarray(k, dtype=np.int64))
        if n_.size and (n_.min() < 0 or n_.max() > self.n):
            raise ValueError("prefix lengths must lie in [0, len(values)]")
        shape = n_.shape
        lo = np.zeros(n_.size, dtype=np.int64)
        hi = n_.reshape(-1).copy()
        rank = k_.reshape(-1) - 1  # 0-based; valid where 0 <= rank < n
        valid = (rank >= 0) & (rank < hi)
        rank = np.where(valid, rank, 0)
        value = np.zeros(n_.size, dtype=np.int64)
        for depth, (ones, zeros) in enumerate(zip(self._ones, self._zeros, strict=True)):
            ones_lo, ones_hi = ones[lo], ones[hi]
            zeros_in = (hi - lo) - (ones_hi - ones_lo)
            right = rank >= zeros_in
            rank = np.where(right, rank - zeros_in, rank)
            value |= right.astype(np.int64) << (self.bits - 1 - depth)
            lo = np.where(right, zeros + ones_lo, lo - ones_lo)
            hi = np.where(right, zeros + ones_hi, hi - ones_hi)
        k_flat = k_.reshape(-1)
        out = np.where(valid, value, np.where(k_flat < 1, 0, self.size))
        return np.asarray(out.reshape(shape), dtype=np.int64)
