"""Plain NumPy reference path (``np.bitwise_count`` of ``np.bitwise_xor``), the oracle for
:mod:`.kernels`. Same signatures as the fast wrappers; chunked so temporaries stay small.
"""

from __future__ import annotations

import numpy as np

from .bits import n_words

__all__ = [
    "bitplane_gemm",
    "bitplane_gemm_threshold",
    "bitplanes",
    "threshold_bits",
    "threshold_pack",
    "xnor_gemm",
    "xnor_gemm_threshold",
]

#: Bytes of XOR temporaries per chunk.
_CHUNK_BYTES = 1 << 25


def _rows_per_chunk(n: int, w: int) -> int:
    return max(1, _CHUNK_BYTES // max(1, 8 * n * w))


def _check(a: np.ndarray, b: np.ndarray) -> None:
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, np.ndarray) or x.dtype != np.uint64 or x.ndim != 2:
            raise ValueError(f"{name} must be a 2-D uint64 packed array")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"word counts differ: a has {a.shape[1]}, b has {b.shape[1]}")


def xor_popcount(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``popcount(a[i] ^ b[j])`` summed over words: int64 (M, N)."""
    _check(a, b)
    m, w = a.shape
    out = np.empty((m, b.shape[0]), dtype=np.int64)
    step = _rows_per_chunk(b.shape[0], w)
    for i in range(0, m, step):
        x = np.bitwise_xor(a[i : i + step, None, :], b[None, :, :])
        out[i : i + step] = np.bitwise_count(x).sum(axis=-1, dtype=np.int64)
    return out


def xnor_gemm(a: np.ndarray, b: np.ndarray, k: int, *, threads: int | None = None) -> np.ndarray:
    """``k - 2 * popcount(a[i] ^ b[j])``: int32 (M, N) dots of packed +-1 rows of length k."""
    return (k - 2 * xor_popcount(a, b)).astype(np.int32)


def threshold_bits(y: np.ndarray, thresh: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """Boolean ``y >= thresh`` (``y <= thresh`` where ``flip``), broadcast over the last axis."""
    y = np.asarray(y, dtype=np.int64)
    t = np.asarray(thresh, dtype=np.int64)
    f = np.asarray(flip, dtype=np.bool_)
    return np.where(f, y <= t, y >= t)


def threshold_pack(
    y: np.ndarray, thresh: np.ndarray, flip: np.ndarray, *, threads: int | None = None
) -> np.ndarray:
    """Packed bits (M, n_words(N)) of :func:`threshold_bits` for a 2-D (M, N) ``y``."""
    from .bits import pack_bits

    y = np.asarray(y)
    if y.ndim != 2 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be a 2-D integer array, got {y.dtype} {y.shape}")
    if np.shape(thresh) != (y.shape[1],) or np.shape(flip) != (y.shape[1],):
        raise ValueError(f"thresh and flip need shape ({y.shape[1]},)")
    return pack_bits(threshold_bits(y, thresh, flip))


def xnor_gemm_threshold(
    a: np.ndarray,
    b: np.ndarray,
    k: int,
    thresh: np.ndarray,
    flip: np.ndarray,
    *,
    threads: int | None = None,
) -> np.ndarray:
    """Reference of the fused kernel: :func:`threshold_pack` of :func:`xnor_gemm`."""
    return threshold_pack(xnor_gemm(a, b, k), thresh, flip)


def bitplanes(u: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Bit planes of uint8 rows: (M, K) -> (M, 8, n_words(K)) uint64, plane b = bit b of u."""
    from .bits import pack_bits

    u = np.asarray(u)
    if u.dtype != np.uint8 or u.ndim != 2:
        raise ValueError(f"bitplanes needs a 2-D uint8 array, got {u.dtype} {u.shape}")
    shifts = np.arange(8, dtype=np.uint8)[:, None]
    out = np.empty((u.shape[0], 8, n_words(u.shape[1])), dtype=np.uint64)
    step = max(1, (1 << 22) // max(1, 8 * u.shape[1]))
    for i in range(0, u.shape[0], step):
        planes = (u[i : i + step, None, :] >> shifts) & 1  # (m, 8, K)
        out[i : i + step] = pack_bits(planes)
    return out


def bitplane_gemm(planes: np.ndarray, b: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """First layer from bit planes, the textbook way:
    ``sum_k w_k u_k = sum_b 2^b (2 popcount(plane_b & w) - popcount(plane_b))``: int32 (M, N).
    """
    planes = np.asarray(planes)
    if planes.dtype != np.uint64 or planes.ndim != 3 or planes.shape[1] != 8:
        raise ValueError(f"planes must be uint64 (M, 8, W), got {planes.dtype} {planes.shape}")
    _check(planes[:, 0, :], b)
    m, _, w = planes.shape
    out = np.zeros((m, b.shape[0]), dtype=np.int64)
    step = _rows_per_chunk(b.shape[0], w)
    for bit in range(8):
        p = planes[:, bit, :]
        pc_p = np.bitwise_count(p).sum(axis=-1, dtype=np.int64)
        for i in range(0, m, step):
            x = np.bitwise_and(p[i : i + step, None, :], b[None, :, :])
            pc = np.bitwise_count(x).sum(axis=-1, dtype=np.int64)
            out[i : i + step] += (2 * pc - pc_p[i : i + step, None]) << bit
    return out.astype(np.int32)


def bitplane_gemm_threshold(
    planes: np.ndarray,
    b: np.ndarray,
    thresh: np.ndarray,
    flip: np.ndarray,
    *,
    threads: int | None = None,
) -> np.ndarray:
    """Reference of the fused first layer: :func:`threshold_pack` of :func:`bitplane_gemm`."""
    return threshold_pack(bitplane_gemm(planes, b), thresh, flip)
