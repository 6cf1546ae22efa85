"""Fast path: numba kernels for XNOR-popcount GEMMs, exact against :mod:`.reference`.

* ``popcount`` is emitted as ``llvm.ctpop.i64`` through ``numba.extending.intrinsic`` (numba has
  no ``np.bitwise_count`` in nopython mode). numba JITs for the host CPU, which is the dispatch:
  with AVX-512 VPOPCNTDQ the word loop vectorises to ``vpopcntq zmm``; on AVX2 or plain POPCNT
  hosts LLVM lowers the same IR to what the CPU has.
* Register blocking: a 4 x 6 micro-kernel keeps 24 accumulators live while streaming the words of
  4 rows of ``A`` and 6 rows of ``B`` (10 loads per 24 XOR + POPCNT + ADD), with 4 x 1, 1 x 6 and
  1 x 1 kernels for the edges. Outputs are computed in ``TILE_ROWS x TILE_COLS`` tiles; the
  tiles are the ``prange`` tasks (rows and columns both split, so batch 1 also uses every
  thread). The thread count is numba's (``numba.set_num_threads`` or the ``threads`` argument
  of the wrappers).
* First layer (uint8 input): bit planes on the same XNOR micro-kernel, or for ``K <= 64`` (small
  first convs) a kernel vectorised across output channels; both optionally fused with the
  threshold.
* ``fastmath`` is off; everything is integer, so the results are exact.

All kernels take packed operands with the same number of words ``W`` per row, padding bits 0
(see :mod:`.bits`). The ``_nb`` functions are the compiled kernels; the public wrappers check
shapes and dtypes.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

__all__ = [
    "bitplane_gemm",
    "bitplane_gemm_threshold",
    "bitplanes",
    "popcount64",
    "threshold_pack",
    "xnor_gemm",
    "xnor_gemm_threshold",
]

#: Tile of outputs per parallel task: rows (a multiple of 8 so a tile holds whole bit-plane
#: groups of the first layer) and columns (a multiple of 64 and of the micro-kernel's 6, so a
#: tile owns whole output words of the fused threshold kernel).
TILE_ROWS = 64
TILE_COLS = 192


@intrinsic
def _popcount(typingctx, x):
    """``llvm.ctpop.i64`` on a 64-bit integer, returned as int64."""
    if not isinstance(x, types.Integer) or x.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.int64(x), codegen


@njit(cache=True)
def popcount64(x):  # pragma: no cover - compiled
    """Population count of one 64-bit word (callable from Python and from njit code)."""
    return _popcount(np.uint64(x))


@njit(cache=True, inline="always")
def _block_4x6(A, B, i, j, buf, bi, bj):  # pragma: no cover - compiled
    W = A.shape[1]
    a0 = A[i + 0]
    a1 = A[i + 1]
    a2 = A[i + 2]
    a3 = A[i + 3]
    b0 = B[j + 0]
    b1 = B[j + 1]
    b2 = B[j + 2]
    b3 = B[j + 3]
    b4 = B[j + 4]
    b5 = B[j + 5]
    c00 = c01 = c02 = c03 = c04 = c05 = 0
    c10 = c11 = c12 = c13 = c14 = c15 = 0
    c20 = c21 = c22 = c23 = c24 = c25 = 0
    c30 = c31 = c32 = c33 = c34 = c35 = 0
    for w in range(W):
        x0, x1, x2, x3 = a0[w], a1[w], a2[w], a3[w]
        y0, y1, y2, y3, y4, y5 = b0[w], b1[w], b2[w], b3[w], b4[w], b5[w]
        c00 += _popcount(x0 ^ y0)
        c01 += _popcount(x0 ^ y1)
        c02 += _popcount(x0 ^ y2)
        c03 += _popcount(x0 ^ y3)
        c04 += _popcount(x0 ^ y4)
        c05 += _popcount(x0 ^ y5)
        c10 += _popcount(x1 ^ y0)
        c11 += _popcount(x1 ^ y1)
        c12 += _popcount(x1 ^ y2)
        c13 += _popcount(x1 ^ y3)
        c14 += _popcount(x1 ^ y4)
        c15 += _popcount(x1 ^ y5)
        c20 += _popcount(x2 ^ y0)
        c21 += _popcount(x2 ^ y1)
        c22 += _popcount(x2 ^ y2)
        c23 += _popcount(x2 ^ y3)
        c24 += _popcount(x2 ^ y4)
        c25 += _popcount(x2 ^ y5)
        c30 += _popcount(x3 ^ y0)
        c31 += _popcount(x3 ^ y1)
        c32 += _popcount(x3 ^ y2)
        c33 += _popcount(x3 ^ y3)
        c34 += _popcount(x3 ^ y4)
        c35 += _popcount(x3 ^ y5)
    buf[bi + 0, bj + 0] = c00
    buf[bi + 0, bj + 1] = c01
    buf[bi + 0, bj + 2] = c02
    buf[bi + 0, bj + 3] = c03
    buf[bi + 0, bj + 4] = c04
    buf[bi + 0, bj + 5] = c05
    buf[bi + 1, bj + 0] = c10
    buf[bi + 1, bj + 1] = c11
    buf[bi + 1, bj + 2] = c12
    buf[bi + 1, bj + 3] = c13
    buf[bi + 1, bj + 4] = c14
    buf[bi + 1, bj + 5] = c15
    buf[bi + 2, bj + 0] = c20
    buf[bi + 2, bj + 1] = c21
    buf[bi + 2, bj + 2] = c22
    buf[bi + 2, bj + 3] = c23
    buf[bi + 2, bj + 4] = c24
    buf[bi + 2, bj + 5] = c25
    buf[bi + 3, bj + 0] = c30
    buf[bi + 3, bj + 1] = c31
    buf[bi + 3, bj + 2] = c32
    buf[bi + 3, bj + 3] = c33
    buf[bi + 3, bj + 4] = c34
    buf[bi + 3, bj + 5] = c35


@njit(cache=True, inline="always")
def _block_4x1(A, B, i, j, buf, bi, bj):  # pragma: no cover - compiled
    W = A.shape[1]
    a0 = A[i + 0]
    a1 = A[i + 1]
    a2 = A[i + 2]
    a3 = A[i + 3]
    b0 = B[j + 0]
    c00 = 0
    c10 = 0
    c20 = 0
    c30 = 0
    for w in range(W):
        x0, x1, x2, x3 = a0[w], a1[w], a2[w], a3[w]
        y0 = b0[w]
        c00 += _popcount(x0 ^ y0)
        c10 += _popcount(x1 ^ y0)
        c20 += _popcount(x2 ^ y0)
        c30 += _popcount(x3 ^ y0)
    buf[bi + 0, bj + 0] = c00
    buf[bi + 1, bj + 0] = c10
    buf[bi + 2, bj + 0] = c20
    buf[bi + 3, bj + 0] = c30


@njit(cache=True, inline="always")
def _block_1x6(A, B, i, j, buf, bi, bj):  # pragma: no cover - compiled
    W = A.shape[1]
    a0 = A[i + 0]
    b0 = B[j + 0]
    b1 = B[j + 1]
    b2 = B[j + 2]
    b3 = B[j + 3]
    b4 = B[j + 4]
    b5 = B[j + 5]
    c00 = c01 = c02 = c03 = c04 = c05 = 0
    for w in range(W):
        x0 = a0[w]
        y0, y1, y2, y3, y4, y5 = b0[w], b1[w], b2[w], b3[w], b4[w], b5[w]
        c00 += _popcount(x0 ^ y0)
        c01 += _popcount(x0 ^ y1)
        c02 += _popcount(x0 ^ y2)
        c03 += _popcount(x0 ^ y3)
        c04 += _popcount(x0 ^ y4)
        c05 += _popcount(x0 ^ y5)
    buf[bi + 0, bj + 0] = c00
    buf[bi + 0, bj + 1] = c01
    buf[bi + 0, bj + 2] = c02
    buf[bi + 0, bj + 3] = c03
    buf[bi + 0, bj + 4] = c04
    buf[bi + 0, bj + 5] = c05


@njit(cache=True, inline="always")
def _block_1x1(A, B, i, j, buf, bi, bj):  # pragma: no cover - compiled
    W = A.shape[1]
    a0 = A[i + 0]
    b0 = B[j + 0]
    c00 = 0
    for w in range(W):
        x0 = a0[w]
        y0 = b0[w]
        c00 += _popcount(x0 ^ y0)
    buf[bi + 0, bj + 0] = c00


@njit(cache=True)
def _tile_popcounts(A, B, i0, i1, j0, j1, buf):  # pragma: no cover - compiled
    """``buf[i - i0, j - j0] = sum_w popcount(A[i, w] ^ B[j, w])`` on the tile."""
    n4 = (i1 - i0) // 4
    n6 = (j1 - j0) // 6
    je = j0 + 6 * n6
    for bi in range(n4):
        i = i0 + 4 * bi
        for bj in range(n6):
            _block_4x6(A, B, i, j0 + 6 * bj, buf, i - i0, 6 * bj)
        for j in range(je, j1):
            _block_4x1(A, B, i, j, buf, i - i0, j - j0)
    for i in range(i0 + 4 * n4, i1):
        for bj in range(n6):
            _block_1x6(A, B, i, j0 + 6 * bj, buf, i - i0, 6 * bj)
        for j in range(je, j1):
            _block_1x1(A, B, i, j, buf, i - i0, j - j0)


@njit(parallel=True, cache=True)
def _xnor_gemm_nb(A, B, k, out):  # pragma: no cover - compiled
    M = A.shape[0]
    N = B.shape[0]
    nti = (M + TILE_ROWS - 1) // TILE_ROWS
    ntj = (N + TILE_COLS - 1) // TILE_COLS
    for t in prange(nti * ntj):
        ti = t // ntj
        tj = t - ti * ntj
        i0 = ti * TILE_ROWS
        i1 = min(M, i0 + TILE_ROWS)
        j0 = tj * TILE_COLS
        j1 = min(N, j0 + TILE_COLS)
        buf = np.empty((TILE_ROWS, TILE_COLS), dtype=np.int64)
        _tile_popcounts(A, B, i0, i1, j0, j1, buf)
        # zero-based loops over views: no negative-index wraparound code, vectorisable
        for ii in range(i1 - i0):
            orow = out[i0 + ii, j0:j1]
            brow = buf[ii]
            for jj in range(j1 - j0):
                orow[jj] = k - 2 * brow[jj]


@njit(parallel=True, cache=True)
def _xnor_gemm_threshold_nb(A, B, k, sgn, st, out):  # pragma: no cover - compiled
    # bit j of row i = (sgn[j] * y[i, j] >= st[j]) with y = k - 2 * popcount; out zeroed.
    M = A.shape[0]
    N = B.shape[0]
    nti = (M + TILE_ROWS - 1) // TILE_ROWS
    ntj = (N + TILE_COLS - 1) // TILE_COLS
    for t in prange(nti * ntj):
        ti = t // ntj
        tj = t - ti * ntj
        i0 = ti * TILE_ROWS
        i1 = min(M, i0 + TILE_ROWS)
        j0 = tj * TILE_COLS
        j1 = min(N, j0 + TILE_COLS)
        buf = np.empty((TILE_ROWS, TILE_COLS), dtype=np.int64)
        _tile_popcounts(A, B, i0, i1, j0, j1, buf)
        nj = j1 - j0
        sg = sgn[j0:j1]
        stt = st[j0:j1]
        for ii in range(i1 - i0):
            brow = buf[ii]
            orow = out[i0 + ii, j0 >> 6 :]
            for wq in range((nj + 63) >> 6):
                base = wq << 6
                word = np.uint64(0)
                for b in range(min(64, nj - base)):
                    jj = base + b
                    y = k - 2 * brow[jj]
                    word |= np.uint64(sg[jj] * y >= stt[jj]) << np.uint64(b)
                orow[wq] = word


@njit(parallel=True, cache=True)
def _bitplane_gemm_nb(P, B, pcw, out):  # pragma: no cover - compiled
    # P: (8 M, W) bit-plane rows (row 8 m + b = plane b of sample m); B: (N, W) weight bits;
    # pcw[j] = popcount(B[j]). sum_i w_i p_i = popcount(w) - popcount(p ^ w) for a 0/1 plane
    # p and +-1 weights w, so y[m, j] = 255 pcw[j] - sum_b 2^b popcount(P[8m+b] ^ B[j]).
    M8 = P.shape[0]
    N = B.shape[0]
    nti = (M8 + TILE_ROWS - 1) // TILE_ROWS
    ntj = (N + TILE_COLS - 1) // TILE_COLS
    for t in prange(nti * ntj):
        ti = t // ntj
        tj = t - ti * ntj
        i0 = ti * TILE_ROWS
        i1 = min(M8, i0 + TILE_ROWS)
        j0 = tj * TILE_COLS
        j1 = min(N, j0 + TILE_COLS)
        buf = np.empty((TILE_ROWS, TILE_COLS), dtype=np.int64)
        _tile_popcounts(P, B, i0, i1, j0, j1, buf)
        pw = pcw[j0:j1]
        for mm in range((i1 - i0) >> 3):
            r = mm << 3
            orow = out[(i0 >> 3) + mm, j0:j1]
            for c in range(j1 - j0):
                s = (
                    buf[r, c]
                    + 2 * buf[r + 1, c]
                    + 4 * buf[r + 2, c]
                    + 8 * buf[r + 3, c]
                    + 16 * buf[r + 4, c]
                    + 32 * buf[r + 5, c]
                    + 64 * buf[r + 6, c]
                    + 128 * buf[r + 7, c]
                )
                orow[c] = 255 * pw[c] - s


@njit(cache=True)
def _pack_row(yrow, sgn, st, orow):  # pragma: no cover - compiled
    # orow[w] bit b = (sgn[j] * yrow[j] >= st[j]), j = 64 w + b
    n = yrow.shape[0]
    for wq in range(orow.shape[0]):
        base = wq << 6
        word = np.uint64(0)
        for b in range(min(64, n - base)):
            j = base + b
            word |= np.uint64(sgn[j] * np.int64(yrow[j]) >= st[j]) << np.uint64(b)
        orow[wq] = word


@njit(parallel=True, cache=True)
def _threshold_pack_nb(y, sgn, st, out):  # pragma: no cover - compiled
    for i in prange(y.shape[0]):
        _pack_row(y[i], sgn, st, out[i])


@njit(parallel=True, cache=True)
def _bitplane_w1_nb(P, b, pcw, sgn, st, fuse, y, out):  # pragma: no cover - compiled
    # First layer with K <= 64 (one word: small convs): P (M, 8) planes, b (N,) weight words.
    # Vectorises over the output channels j. fuse: threshold into out (M, words), else y.
    M = P.shape[0]
    N = b.shape[0]
    CH = 64
    for c in prange((M + CH - 1) // CH):
        yrow = np.empty(N, dtype=np.int64)
        for m in range(c * CH, min(M, c * CH + CH)):
            p0, p1, p2, p3 = P[m, 0], P[m, 1], P[m, 2], P[m, 3]
            p4, p5, p6, p7 = P[m, 4], P[m, 5], P[m, 6], P[m, 7]
            for j in range(N):
                w = b[j]
                s = (
                    _popcount(p0 ^ w)
                    + 2 * _popcount(p1 ^ w)
                    + 4 * _popcount(p2 ^ w)
                    + 8 * _popcount(p3 ^ w)
                    + 16 * _popcount(p4 ^ w)
                    + 32 * _popcount(p5 ^ w)
                    + 64 * _popcount(p6 ^ w)
                    + 128 * _popcount(p7 ^ w)
                )
                yrow[j] = 255 * pcw[j] - s
            if fuse:
                _pack_row(yrow, sgn, st, out[m])
            else:
                orow = y[m]
                for j in range(N):
                    orow[j] = yrow[j]


@njit(parallel=True, cache=True)
def _bitplanes_nb(u, out):  # pragma: no cover - compiled
    # u: (M, K) uint8 -> out: (M, 8, W) uint64, plane b bit k = (u[m, k] >> b) & 1.
    M, K = u.shape
    W = out.shape[2]
    for m in prange(M):
        for wi in range(W):
            k0 = 64 * wi
            p0 = p1 = p2 = p3 = p4 = p5 = p6 = p7 = np.uint64(0)
            for k in range(k0, min(K, k0 + 64)):
                v = np.uint64(u[m, k])
                s = np.uint64(k - k0)
                p0 |= (v & np.uint64(1)) << s
                p1 |= ((v >> np.uint64(1)) & np.uint64(1)) << s
                p2 |= ((v >> np.uint64(2)) & np.uint64(1)) << s
                p3 |= ((v >> np.uint64(3)) & np.uint64(1)) << s
                p4 |= ((v >> np.uint64(4)) & np.uint64(1)) << s
                p5 |= ((v >> np.uint64(5)) & np.uint64(1)) << s
                p6 |= ((v >> np.uint64(6)) & np.uint64(1)) << s
                p7 |= ((v >> np.uint64(7)) & np.uint64(1)) << s
            out[m, 0, wi] = p0
            out[m, 1, wi] = p1
            out[m, 2, wi] = p2
            out[m, 3, wi] = p3
            out[m, 4, wi] = p4
            out[m, 5, wi] = p5
            out[m, 6, wi] = p6
            out[m, 7, wi] = p7


# -- public wrappers ------------------------------------------------------------------------


def _packed_2d(x: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray) or x.dtype != np.uint64 or x.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D uint64 packed array, got "
            f"{getattr(x, 'dtype', type(x))} {getattr(x, 'shape', '')}"
        )
    return np.ascontiguousarray(x)


def _check_pair(a: np.ndarray, b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    a = _packed_2d(a, "a")
    b = _packed_2d(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"word counts differ: a has {a.shape[1]}, b has {b.shape[1]}")
    if not 0 <= k <= 64 * a.shape[1]:
        raise ValueError(f"k={k} bits do not fit {a.shape[1]} words")
    return a, b


def _with_threads(threads: int | None):
    class _Ctx:
        def __enter__(self):
            self.old = numba.get_num_threads()
            if threads is not None:
                numba.set_num_threads(int(threads))

        def __exit__(self, *exc):
            numba.set_num_threads(self.old)

    return _Ctx()


def _sign_threshold(thresh: np.ndarray, flip: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(sgn, st)`` int64 with ``bit = sgn * y >= st`` equivalent to ``y >= t`` / ``y <= t``."""
    t = np.asarray(thresh, dtype=np.int64).reshape(-1)
    f = np.asarray(flip, dtype=np.bool_).reshape(-1)
    if t.shape != (n,) or f.shape != (n,):
        raise ValueError(f"thresh and flip need shape ({n},), got {t.shape} and {f.shape}")
    sgn = np.where(f, -1, 1).astype(np.int64)
    return sgn, sgn * t


def xnor_gemm(a: np.ndarray, b: np.ndarray, k: int, *, threads: int | None = None) -> np.ndarray:
    """Binary GEMM: ``out[i, j] = k - 2 * popcount(a[i] ^ b[j])`` as int32, shape (M, N).

    ``a`` (M, W) and ``b`` (N, W) are packed +-1 rows of length ``k`` (padding bits 0).
    """
    a, b = _check_pair(a, b, k)
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int32)
    with _with_threads(threads):
        _xnor_gemm_nb(a, b, np.int64(k), out)
    return out


def xnor_gemm_threshold(
    a: np.ndarray,
    b: np.ndarray,
    k: int,
    thresh: np.ndarray,
    flip: np.ndarray,
    *,
    threads: int | None = None,
) -> np.ndarray:
    """Fused binary GEMM + threshold: packed bits (M, n_words(N)) for the next layer.

    Output bit ``j`` of row ``i`` is ``y >= thresh[j]`` (``y <= thresh[j]`` where ``flip[j]``)
    with ``y = k - 2 * popcount(a[i] ^ b[j])``; padding bits are 0.
    """
    a, b = _check_pair(a, b, k)
    n = b.shape[0]
    sgn, st = _sign_threshold(thresh, flip, n)
    out = np.zeros((a.shape[0], (n + 63) // 64), dtype=np.uint64)
    with _with_threads(threads):
        _xnor_gemm_threshold_nb(a, b, np.int64(k), sgn, st, out)
    return out


def bitplanes(u: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Bit planes of uint8 rows: (M, K) -> (M, 8, n_words(K)) uint64, plane b = bit b of u."""
    u = np.asarray(u)
    if u.dtype != np.uint8 or u.ndim != 2:
        raise ValueError(f"bitplanes needs a 2-D uint8 array, got {u.dtype} {u.shape}")
    u = np.ascontiguousarray(u)
    out = np.empty((u.shape[0], 8, (u.shape[1] + 63) // 64), dtype=np.uint64)
    with _with_threads(threads):
        _bitplanes_nb(u, out)
    return out


def _check_planes(planes: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    planes = np.asarray(planes)
    if planes.dtype != np.uint64 or planes.ndim != 3 or planes.shape[1] != 8:
        raise ValueError(f"planes must be uint64 (M, 8, W), got {planes.dtype} {planes.shape}")
    b = _packed_2d(b, "b")
    if planes.shape[2] != b.shape[1]:
        raise ValueError(f"word counts differ: planes {planes.shape[2]}, b {b.shape[1]}")
    return np.ascontiguousarray(planes), b


def bitplane_gemm(planes: np.ndarray, b: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """First layer: ``out[m, j] = sum_k w[j, k] * u[m, k]`` (int32) from bit planes.

    ``planes`` is :func:`bitplanes` of the uint8 input (M, 8, W); ``b`` (N, W) the packed
    +-1 weights. Uses ``sum_k w_k p_k = popcount(w) - popcount(p ^ w)`` per 0/1 plane ``p``
    (equivalently ``2 popcount(p & w) - popcount(p)``) on the XNOR kernel.
    """
    planes, b = _check_planes(planes, b)
    pcw = np.bitwise_count(b).sum(axis=1, dtype=np.int64)
    out = np.empty((planes.shape[0], b.shape[0]), dtype=np.int32)
    with _with_threads(threads):
        if planes.shape[2] == 1:
            z = np.zeros(1, dtype=np.int64)
            dummy = np.zeros((1, 1), dtype=np.uint64)
            _bitplane_w1_nb(
                np.ascontiguousarray(planes[:, :, 0]), b[:, 0].copy(), pcw, z, z, False, out, dummy
            )
        else:
            _bitplane_gemm_nb(planes.reshape(-1, planes.shape[2]), b, pcw, out)
    return out


def bitplane_gemm_threshold(
    planes: np.ndarray,
    b: np.ndarray,
    thresh: np.ndarray,
    flip: np.ndarray,
    *,
    threads: int | None = None,
) -> np.ndarray:
    """First layer, fused with the threshold: packed bits (M, n_words(N))."""
    planes, b = _check_planes(planes, b)
    n = b.shape[0]
    sgn, st = _sign_threshold(thresh, flip, n)
    if planes.shape[2] != 1:
        return threshold_pack(
            bitplane_gemm(planes, b, threads=threads), thresh, flip, threads=threads
        )
    pcw = np.bitwise_count(b).sum(axis=1, dtype=np.int64)
    out = np.zeros((planes.shape[0], (n + 63) // 64), dtype=np.uint64)
    with _with_threads(threads):
        dummy = np.zeros((1, 1), dtype=np.int32)
        _bitplane_w1_nb(
            np.ascontiguousarray(planes[:, :, 0]), b[:, 0].copy(), pcw, sgn, st, True, dummy, out
        )
    return out


def threshold_pack(
    y: np.ndarray, thresh: np.ndarray, flip: np.ndarray, *, threads: int | None = None
) -> np.ndarray:
    """Packed bits of ``y >= thresh`` (``y <= thresh`` where ``flip``), per column of (M, N) y."""
    y = np.asarray(y)
    if y.ndim != 2 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be a 2-D integer array, got {y.dtype} {y.shape}")
    y = np.ascontiguousarray(y)
    sgn, st = _sign_threshold(thresh, flip, y.shape[1])
    out = np.empty((y.shape[0], (y.shape[1] + 63) // 64), dtype=np.uint64)
    with _with_threads(threads):
        _threshold_pack_nb(y, sgn, st, out)
    return out
