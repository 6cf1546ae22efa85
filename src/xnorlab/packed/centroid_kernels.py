"""numba fast path of the K-means layer: threshold, pack and Hamming distances in one pass.

As separate NumPy steps (compare, pad, ``np.packbits``, an XNOR GEMM with 10 output columns)
the K-means layer took 8x the time of the 1024 x 784 comparisons it needs; here each row's
pixel flags are packed eight at a time by one multiply and go straight to the popcounts.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .kernels import _with_threads, popcount64

__all__ = ["threshold_hamming"]

#: Rows per task (the flag and word buffers are allocated once per task).
ROWS = 64

#: Multiplying eight 0/1 bytes by this puts byte ``j`` at bit ``56 + j`` with no carries.
_GATHER = np.uint64(0x0102040810204080)


@njit(parallel=True, cache=True)
def _threshold_hamming_nb(u, thr, w, out):  # pragma: no cover - compiled
    m_rows, k = u.shape
    c_rows, n_words = w.shape
    t = np.int16(thr)  # 0..256: 256 sets no bit
    for blk in prange((m_rows + ROWS - 1) // ROWS):
        flags = np.zeros(n_words * 64, np.uint8)  # padding flags stay 0
        lanes = flags.view(np.uint64)
        words = np.empty(n_words, np.uint64)
        for m in range(blk * ROWS, min(m_rows, blk * ROWS + ROWS)):
            row = u[m]
            for i in range(k):
                flags[i] = np.uint8(1) if np.int16(row[i]) >= t else np.uint8(0)
            for q in range(n_words):
                word = np.uint64(0)
                for b in range(8):
                    byte = (lanes[8 * q + b] * _GATHER) >> np.uint64(56)
                    word |= byte << np.uint64(8 * b)
                words[q] = word
            for c in range(c_rows):
                d = 0
                for q in range(n_words):
                    d += popcount64(words[q] ^ w[c, q])
                out[m, c] = d


def threshold_hamming(u: np.ndarray, threshold: int, w: np.ndarray, *,
                      threads: int | None = None) -> np.ndarray:
    """Hamming distances of the bits ``u >= threshold`` of uint8 rows (M, K) to the packed rows
    ``w`` (C, n_words(K)) (high padding bits 0): int32 (M, C)."""
    u = np.ascontiguousarray(u, dtype=np.uint8)
    w = np.ascontiguousarray(w, dtype=np.uint64)
    if u.ndim != 2 or w.ndim != 2 or w.shape[1] != (u.shape[1] + 63) // 64:
        raise ValueError(f"threshold_hamming: rows {u.shape} do not match words {w.shape}")
    if not 0 <= threshold <= 256:
        raise ValueError(f"threshold must be in 0..256, got {threshold}")
    out = np.empty((u.shape[0], w.shape[0]), np.int32)
    with _with_threads(threads):
        _threshold_hamming_nb(u, int(threshold), w, out)
    return out
