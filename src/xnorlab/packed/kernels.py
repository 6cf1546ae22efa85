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
* First dense layer (uint8 input): bit planes on the same XNOR micro-kernel, or for ``K <= 64``
  a kernel vectorised across output channels; both optionally fused with the threshold.
* Convolutions (:func:`binary_conv2d`, :func:`uint8_conv2d`) do not build im2col patches: per
  sample they lay the input out as padded source planes and sweep every tap over contiguous
  runs of positions (the tap formulation of :mod:`.reference`), vectorising over output
  *positions*, which suits the narrow layers of small CNNs (9-word K, 16-64 outputs) far better
  than a GEMM micro-kernel; threshold, bit packing and a non-overlapping OR-pool are fused.
  Binary convs on <= 32 channels sweep byte planes instead (:func:`pixel_sums`): one byte of
  a pixel's channels per uint8 lane, 32 positions per AVX2 vector (64 with ``vpopcntb``); on
  AVX2 the popcounts are ``vpshufb`` nibble-table lookups (:mod:`.nibbles`).
* On AVX2 hosts without BITALG the binary GEMMs from 2 rows per thread run on the same nibble
  tables (:func:`_nibble_columns_nb`): rows in pairs, vectorised over output columns, the
  weights as nibble planes; 1.4-1.6x the XOR kernels, above the XOR+popcount peak.
* First dense layer from uint8 rows (:func:`uint8_gemm`): on AVX2 hosts without VNNI
  ``vpshufb`` lookups of pixel-nibble subset sums (:mod:`.pixel_tables`) at every batch size,
  thresholded in L1.
  Elsewhere oneDNN's quantized linear, uint8 pixels by the +-1 weights as int8 with int32 sums
  (VNNI ``vpdpbusd`` / AMX-INT8 where the CPU has them), its float32 output exact below 2^24,
  the weights packed once. Where that op is missing, an int8 GEMM of ``u - 128`` (``u ^ 0x80``
  as int8) on ``torch._int_mm``, corrected exactly by ``128 colsum(w)`` (folded into the
  thresholds when fused); without torch a numba loop computes the same integers. Below
  :data:`BITPLANE_MAX_ROWS` rows the bit planes run on the column kernel instead.
* Batch 1 first layer (without the tiles): with the packed weights transposed to (W, N), the
  column kernel vectorises over output columns, and those weights (426 KB for 784 x 4096) stay
  cached where the int8 ones (3.2 MB) are streamed. (For hidden layers at batch 1 the blocked
  kernel was as fast: both stream the packed weights once.)
* ``fastmath`` is off; everything is integer, so the results are exact.

All kernels take packed operands with the same number of words ``W`` per row, padding bits 0
(see :mod:`.bits`). The ``_nb`` functions are the compiled kernels; the public wrappers check
shapes and dtypes.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

from .nibbles import (
    NIBBLE_LANES,
    NIBBLE_OUTPUTS,
    NIBBLE_TAPS,
    nibble_sweeps,
    nibble_tables,
    nibble_tap_sums,
    row_pair_sums,
    split_nibbles,
    weight_planes,
)
from .pixel_tables import (
    BLOCK_COLS,
    GROUP_PIXELS,
    ROW_BLOCKS,
    RUN_GROUPS,
    TABLE_BLOCKS,
    TABLE_BYTES,
    TABLE_CHUNK_BLOCKS,
    TABLE_ROWS,
    TABLE_TASK_ROWS,
    build_tables,
    index_planes,
    table_first_layer,
    table_row,
    table_tile,
)
from .reference import TAPS_PER_PASS, ConvTaps, Int8Weights, conv_geometry

__all__ = [
    "binary_conv2d",
    "binary_conv2d_runner",
    "bitplane_gemm",
    "bitplane_gemm_threshold",
    "bitplanes",
    "compact_pixels_runner",
    "popcount64",
    "threshold_pack",
    "uint8_conv2d",
    "uint8_conv2d_runner",
    "uint8_gemm",
    "uint8_gemm_threshold",
    "uint8_gemm_threshold_runner",
    "xnor_gemm",
    "xnor_gemm_runner",
    "xnor_gemm_threshold",
    "xnor_gemm_threshold_runner",
    "xnor_scores_runner",
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


@intrinsic
def _popcount_lane(typingctx, x):
    """``llvm.ctpop`` at the width of an unsigned integer, same type out: a sweep over uint8
    (uint16, uint32) lanes vectorises to ``vpopcntb`` (``w``, ``d``; AVX-512 BITALG)."""
    if not isinstance(x, types.Integer) or x.signed:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return x(x), codegen


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
def _xnor_gemm_nb(A, B, k, tr, out):  # pragma: no cover - compiled
    M = A.shape[0]
    N = B.shape[0]
    nti = (M + tr - 1) // tr  # tr: tile rows, see _tile_rows
    ntj = (N + TILE_COLS - 1) // TILE_COLS
    for t in prange(nti * ntj):
        ti = t // ntj
        tj = t - ti * ntj
        i0 = ti * tr
        i1 = min(M, i0 + tr)
        j0 = tj * TILE_COLS
        j1 = min(N, j0 + TILE_COLS)
        buf = np.empty((tr, TILE_COLS), dtype=np.int64)
        _tile_popcounts(A, B, i0, i1, j0, j1, buf)
        # zero-based loops over views: no negative-index wraparound code, vectorisable
        for ii in range(i1 - i0):
            orow = out[i0 + ii, j0:j1]
            brow = buf[ii]
            for jj in range(j1 - j0):
                orow[jj] = k - 2 * brow[jj]


@njit(parallel=True, cache=True)
def _compact_pixels_nb(x, c, out):  # pragma: no cover - compiled
    # out[i]: the low c (< 64) bits of every word of x[i], end to end; the rest of out is 0
    mask = (np.uint64(1) << np.uint64(c)) - np.uint64(1)
    for i in prange(x.shape[0]):
        row = out[i]
        row[:] = 0
        for q in range(x.shape[1]):
            off = q * c
            w, s = off >> 6, off & 63
            v = x[i, q] & mask
            row[w] |= v << np.uint64(s)
            if s + c > 64:
                row[w + 1] |= v >> np.uint64(64 - s)


@njit(parallel=True, cache=True)
def _xnor_scores_nb(A, B, k, scale, shift, rows, out):  # pragma: no cover - compiled
    # out[i, j] = float32(k - 2 popcount(A[i] ^ B[j])) * scale[j] + shift[j], rounded as
    # numpy's float32 multiply then add (no fastmath: no fused multiply-add)
    M = A.shape[0]
    N, W = B.shape
    for blk in prange((M + rows - 1) // rows):
        for i in range(blk * rows, min(M, (blk + 1) * rows)):
            a = A[i]
            for j in range(N):
                b = B[j]
                p = 0
                for w in range(W):
                    p += _popcount(a[w] ^ b[w])
                out[i, j] = np.float32(k - 2 * p) * scale[j] + shift[j]


@njit(parallel=True, cache=True)
def _xnor_gemm_threshold_nb(A, B, k, lo, hi, tr, out):  # pragma: no cover - compiled
    # bit j of row i = lo[j] <= y[i, j] <= hi[j] with y = k - 2 * popcount; out zeroed.
    M = A.shape[0]
    N = B.shape[0]
    nti = (M + tr - 1) // tr  # tr: tile rows, see _tile_rows
    ntj = (N + TILE_COLS - 1) // TILE_COLS
    for t in prange(nti * ntj):
        ti = t // ntj
        tj = t - ti * ntj
        i0 = ti * tr
        i1 = min(M, i0 + tr)
        j0 = tj * TILE_COLS
        j1 = min(N, j0 + TILE_COLS)
        buf = np.empty((tr, TILE_COLS), dtype=np.int64)
        _tile_popcounts(A, B, i0, i1, j0, j1, buf)
        nj = j1 - j0
        lo_t = lo[j0:j1]
        hi_t = hi[j0:j1]
        yrow = np.empty(nj, dtype=np.int32)
        for ii in range(i1 - i0):
            brow = buf[ii]
            for jj in range(nj):
                yrow[jj] = k - 2 * brow[jj]
            _pack_row(yrow, lo_t, hi_t, out[i0 + ii, j0 >> 6 :])


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
def _pack_row(yrow, lo, hi, orow):  # pragma: no cover - compiled
    # orow[w] bit b = lo[j] <= yrow[j] <= hi[j], j = 64 w + b. Whole words run a fixed 64-bit
    # loop with no multiply, which LLVM vectorises (~10x the variable-length loop)
    n = yrow.shape[0]
    full = n >> 6
    for wq in range(full):
        base = wq << 6
        word = np.uint64(0)
        for b in range(64):
            v = yrow[base + b]
            word |= np.uint64((v >= lo[base + b]) & (v <= hi[base + b])) << np.uint64(b)
        orow[wq] = word
    if n & 63:
        base = full << 6
        word = np.uint64(0)
        for b in range(n - base):
            v = yrow[base + b]
            word |= np.uint64((v >= lo[base + b]) & (v <= hi[base + b])) << np.uint64(b)
        orow[full] = word


@njit(parallel=True, cache=True)
def _threshold_pack_nb(y, lo, hi, out):  # pragma: no cover - compiled
    for i in prange(y.shape[0]):
        _pack_row(y[i], lo, hi, out[i])


@njit(parallel=True, cache=True)
def _bitplane_w1_nb(P, b, pcw, lo, hi, fuse, y, out):  # pragma: no cover - compiled
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
                _pack_row(yrow, lo, hi, out[m])
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


# -- small batches: the first layer vectorised over output columns (transposed weights) -------

#: Output columns per task of the column kernels: a multiple of 64 (a task owns whole words of
#: packed output) whose sums stay in L1 for a few rows.
COLUMN_TILE = 256


@njit(cache=True)
def _column_popcounts(A, Bt, j0, j1, acc):  # pragma: no cover - compiled
    # acc[i, c] = sum_w popcount(A[i, w] ^ Bt[w, j0 + c]) for c < j1 - j0: A (R, W) rows,
    # Bt (W, N) transposed weights. Vectorised over c; four words per pass, so each acc row is
    # loaded and stored once per 4 words instead of once per word
    R, W = A.shape
    n = j1 - j0
    for i in range(R):
        acc[i, :n] = 0
    w4 = W - W % 4
    for w in range(0, w4, 4):
        b0, b1 = Bt[w, j0:j1], Bt[w + 1, j0:j1]
        b2, b3 = Bt[w + 2, j0:j1], Bt[w + 3, j0:j1]
        for i in range(R):
            x0, x1, x2, x3 = A[i, w], A[i, w + 1], A[i, w + 2], A[i, w + 3]
            row = acc[i]
            for c in range(n):
                row[c] += (_popcount(x0 ^ b0[c]) + _popcount(x1 ^ b1[c])
                           + _popcount(x2 ^ b2[c]) + _popcount(x3 ^ b3[c]))
    for w in range(w4, W):
        b0 = Bt[w, j0:j1]
        for i in range(R):
            x0 = A[i, w]
            row = acc[i]
            for c in range(n):
                row[c] += _popcount(x0 ^ b0[c])


@njit(cache=True)
def _emit_row(yrow, lo, hi, j0, y, out, i):  # pragma: no cover - compiled
    # columns j0 .. j0 + len(yrow) of output row i: packed bits lo <= y <= hi into out if
    # lo.size (j0 a multiple of 64), else the int32 values into y
    n = yrow.shape[0]
    if lo.shape[0]:
        _pack_row(yrow, lo[j0 : j0 + n], hi[j0 : j0 + n], out[i, j0 >> 6 :])
    else:
        y[i, j0 : j0 + n] = yrow


@njit(parallel=True, cache=True)
def _bitplane_columns_nb(P, Bt, pcw, lo, hi, y, out):  # pragma: no cover - compiled
    # first dense layer for a few samples from bit planes P (8 M, W) (row 8 m + b = plane b of
    # sample m): y[m, j] = 255 pcw[j] - sum_b 2^b popcount(P[8 m + b] ^ Bt[:, j]) (see
    # _bitplane_gemm_nb), into y (M, N) int32 or, thresholded (lo.size), into out
    # (M, n_words(N)); tasks = column tiles
    M = P.shape[0] >> 3
    N = Bt.shape[1]
    for t in prange((N + COLUMN_TILE - 1) // COLUMN_TILE):
        j0 = t * COLUMN_TILE
        n = min(N, j0 + COLUMN_TILE) - j0
        acc = np.empty((P.shape[0], COLUMN_TILE), np.int64)
        _column_popcounts(P, Bt, j0, j0 + n, acc)
        yrow = np.empty(n, np.int32)
        for m in range(M):
            r = m << 3
            for c in range(n):
                s = (acc[r, c] + 2 * acc[r + 1, c] + 4 * acc[r + 2, c] + 8 * acc[r + 3, c]
                     + 16 * acc[r + 4, c] + 32 * acc[r + 5, c] + 64 * acc[r + 6, c]
                     + 128 * acc[r + 7, c])
                yrow[c] = 255 * pcw[j0 + c] - s
            _emit_row(yrow, lo, hi, j0, y, out, m)


#: Up to this many words per row, and from :data:`COLUMN_MIN_OUTPUTS` outputs, the binary
#: GEMMs run over output columns (transposed weights, :func:`_column_popcounts`): with short
#: rows the tiled micro-kernel spends its time outside the popcounts (measured 1.2-1.5x slower
#: at 8-16 words, batch 64-1024; equal at 32). With fewer outputs than a vector's worth of
#: columns per pass (10 classes) the tiled kernel is 2x faster.
COLUMN_MAX_WORDS = 16
COLUMN_MIN_OUTPUTS = 64

#: Rows per task of the column GEMM: their sums (COLUMN_ROWS x COLUMN_TILE int64) stay in L1.
COLUMN_ROWS = 16


def _use_columns(a: np.ndarray, b: np.ndarray) -> bool:
    """True where the column GEMM beats the tiled one (see :data:`COLUMN_MAX_WORDS`)."""
    return a.shape[1] <= COLUMN_MAX_WORDS and b.shape[0] >= COLUMN_MIN_OUTPUTS


@njit(parallel=True, cache=True)
def _xnor_columns_nb(A, Bt, k, lo, hi, y, out):  # pragma: no cover - compiled
    # y = k - 2 popcount(A[i] ^ Bt[:, j]) into y (M, N) int32 or, thresholded (lo.size), into
    # out (M, n_words(N)); tasks = blocks of COLUMN_ROWS rows x COLUMN_TILE columns
    M = A.shape[0]
    N = Bt.shape[1]
    nrb = (M + COLUMN_ROWS - 1) // COLUMN_ROWS
    ntj = (N + COLUMN_TILE - 1) // COLUMN_TILE
    for t in prange(nrb * ntj):
        i0 = (t // ntj) * COLUMN_ROWS
        i1 = min(M, i0 + COLUMN_ROWS)
        j0 = (t % ntj) * COLUMN_TILE
        n = min(N, j0 + COLUMN_TILE) - j0
        acc = np.empty((COLUMN_ROWS, COLUMN_TILE), np.int64)
        _column_popcounts(A[i0:i1], Bt, j0, j0 + n, acc)
        yrow = np.empty(n, np.int32)
        for i in range(i1 - i0):
            for c in range(n):
                yrow[c] = k - 2 * acc[i, c]
            _emit_row(yrow, lo, hi, j0, y, out, i0 + i)


@njit(parallel=True, cache=True)
def _nibble_columns_nb(A, wlo, whi, offs, tasks, k, lo, hi, y, out):  # pragma: no cover
    # _xnor_columns_nb on AVX2 nibble tables (.nibbles): per pair of input rows, their bytes'
    # tables against the weights' nibble planes (the conv sweep's pass, with rows as output
    # channels, bytes as taps, output columns as positions); tasks: one run of pairs per thread
    a8 = A.view(np.uint8)
    M = A.shape[0]
    N = y.shape[1] if lo.shape[0] == 0 else lo.shape[0]
    npad = wlo.shape[0] // offs.shape[0]
    pairs = (M + NIBBLE_OUTPUTS - 1) // NIBBLE_OUTPUTS
    for task in prange(tasks):
        p0, p1 = _task_blocks(pairs, 1, task, tasks)
        acc = np.empty((NIBBLE_OUTPUTS, npad), np.uint16)
        part = np.empty((NIBBLE_OUTPUTS, npad), np.uint8)
        yrow = np.empty(N, np.int32)
        for pr in range(p0, p1):
            i0 = pr * NIBBLE_OUTPUTS
            row_pair_sums(wlo, whi, offs, a8, i0, NIBBLE_PASSES_PER_SUM, acc, part)
            for c in range(min(NIBBLE_OUTPUTS, M - i0)):
                for j in range(N):
                    yrow[j] = k - 2 * np.int64(acc[c, j])
                _emit_row(yrow, lo, hi, 0, y, out, i0 + c)


#: Below this many rows (batch 1-3) the XNOR GEMMs that do not run over columns run row by
#: row (:func:`_xnor_rows_nb`): 4 weight rows against one input row, vectorised over words.
#: At batch 1 the tiled kernel's 1 x 6 edge spent a load per popcount; 4096 x 4096 bits took
#: 87 us there and 63 here (0.62 -> 0.85 of the peak, AVX2 EPYC).
ROWS_MAX = 3

#: Outputs per task of the row kernel (a multiple of 64: a task owns whole output words).
ROW_TILE = 256


def _use_rows(a: np.ndarray, b: np.ndarray) -> bool:
    """True where the row-by-row GEMM runs (see :data:`ROWS_MAX`)."""
    return a.shape[0] <= ROWS_MAX and not _use_columns(a, b)


@njit(cache=True)
def _row_popcounts(a, B, j0, j1, acc):  # pragma: no cover - compiled
    # acc[j - j0] = popcount(a ^ B[j]) for j0 <= j < j1: four weight rows per pass, each a
    # reduction over the words that LLVM vectorises
    W = a.shape[0]
    j4 = j1 - (j1 - j0) % 4
    for j in range(j0, j4, 4):
        b0, b1, b2, b3 = B[j], B[j + 1], B[j + 2], B[j + 3]
        c0 = c1 = c2 = c3 = 0
        for w in range(W):
            x = a[w]
            c0 += _popcount(x ^ b0[w])
            c1 += _popcount(x ^ b1[w])
            c2 += _popcount(x ^ b2[w])
            c3 += _popcount(x ^ b3[w])
        acc[j - j0], acc[j - j0 + 1], acc[j - j0 + 2], acc[j - j0 + 3] = c0, c1, c2, c3
    for j in range(j4, j1):
        b0 = B[j]
        c0 = 0
        for w in range(W):
            c0 += _popcount(a[w] ^ b0[w])
        acc[j - j0] = c0


@njit(parallel=True, cache=True)
def _xnor_rows_nb(A, B, k, lo, hi, y, out):  # pragma: no cover - compiled
    # y = k - 2 popcount(A[i] ^ B[j]) into y (M, N) int32 or, thresholded (lo.size), into out
    # (M, n_words(N)); tasks = (row, ROW_TILE outputs)
    M = A.shape[0]
    N = B.shape[0]
    nt = (N + ROW_TILE - 1) // ROW_TILE
    for t in prange(M * nt):
        i = t // nt
        j0 = (t % nt) * ROW_TILE
        j1 = min(N, j0 + ROW_TILE)
        acc = np.empty(j1 - j0, np.int64)
        _row_popcounts(A[i], B, j0, j1, acc)
        yrow = np.empty(j1 - j0, np.int32)
        for c in range(j1 - j0):
            yrow[c] = k - 2 * acc[c]
        _emit_row(yrow, lo, hi, j0, y, out, i)


# -- direct convolution over source planes (see reference.ConvTaps) ---------------------------


@njit(cache=True)
def _fill_bit_sources(x, n0, pad, groups, c, geom, src):  # pragma: no cover - compiled
    # src[i]: padded word plane i of samples n0 .. n0 + B - 1, one hp * wp plane after the
    # other; then the grouped planes (pixel i of a group at bits i * c); then a zero plane
    _, h, w, wc = x.shape
    pt, pl, hp, wp = geom.pt, geom.pl, geom.hp, geom.wp
    nb = min(geom.block, x.shape[0] - n0)
    for i in range(wc):
        s = src[i]
        s[:] = pad[i]
        for b in range(nb):
            for y in range(h):
                row = s[b * hp * wp + (y + pt) * wp + pl :]
                for xx in range(w):
                    row[xx] = x[n0 + b, y, xx, i]
    s0 = src[0]
    size = src.shape[1]
    for k in range(groups.shape[0]):
        s = src[wc + k]
        s[:] = s0
        for i in range(1, groups[k]):
            sh = np.uint64(i * c)
            for q in range(size - i):
                s[q] |= s0[q + i] << sh
    src[-1] = 0


@njit(cache=True)
def _row_selectors(plane, ky, kx, wt, c, kh, kw, wp):  # pragma: no cover - compiled
    # the uint8 conv as row taps: row tap r = (channel ci, kernel row y) of output channel j
    # reads row-combination plane sel[r, j] at offset off[r] = y Wp. A kernel row of +-1
    # weights is sigma * (1, e1, e2, ..) with e_i = +-1: plane ci P + p holds
    # s[q] + e1 s[q + 1] + .. (bit i - 1 of p set where e_i = -1), plane C P + ci P + p its
    # negation, so sigma selects a plane; taps are padded to whole passes with the zero plane
    co = wt.shape[1]
    n_combos = 1 << (kw - 1)
    rows = c * kh
    padded = rows + (-rows) % 3
    w = np.zeros((c, kh, kw, co), np.int64)
    for t in range(plane.shape[0]):
        if plane[t] >= 0:  # filler taps (plane -1) carry weight 0
            for j in range(co):
                w[plane[t], ky[t], kx[t], j] = wt[t, j]
    sel = np.full((padded, co), 2 * c * n_combos, np.int64)
    off = np.zeros(padded, np.int64)
    for ci in range(c):
        for y in range(kh):
            r = ci * kh + y
            off[r] = y * wp
            for j in range(co):
                sigma = w[ci, y, 0, j]
                p = 0
                for i in range(1, kw):
                    if w[ci, y, i, j] != sigma:
                        p |= 1 << (i - 1)
                sel[r, j] = ci * n_combos + p + (c * n_combos if sigma < 0 else 0)
    return sel, off


@njit(cache=True)
def _fill_row_combos(u, n0, geom, kw, s, src):  # pragma: no cover - compiled
    # s: the zero-padded plane of one channel of samples n0 .. (blocks end to end, as for
    # bits), kw - 1 zeros longer than a plane of src; src: the row combinations of every
    # channel and their negations (see _row_selectors); its last (zero) plane is left alone
    _, ch, h, w = u.shape
    pt, pl, hp, wp = geom.pt, geom.pl, geom.hp, geom.wp
    nb = min(geom.block, u.shape[0] - n0)
    n_combos = 1 << (kw - 1)
    size = src.shape[1]
    for ci in range(ch):
        s[:] = 0
        for b in range(nb):
            for y in range(h):
                row = s[b * hp * wp + (y + pt) * wp + pl :]
                for xx in range(w):
                    row[xx] = u[n0 + b, ci, y, xx]
        # plain loops with a cast to the lane type in each: a slice copy, or numba's int64
        # promotion of int16 arithmetic, made this fill 4-6x slower
        lane = src.dtype.type
        if kw == 3:  # the usual width, one pass per combination (the general loop: 6x slower)
            for p in range(4):
                d = src[ci * 4 + p]
                neg = src[(ch + ci) * 4 + p]
                e1 = lane(-1 if p & 1 else 1)
                e2 = lane(-1 if p & 2 else 1)
                for q in range(size):
                    v = lane(s[q] + e1 * s[q + 1] + e2 * s[q + 2])
                    d[q] = v
                    neg[q] = lane(-v)
            continue
        for p in range(n_combos):
            d = src[ci * n_combos + p]
            if kw == 1:
                for q in range(size):
                    d[q] = s[q]
            else:
                e = lane(-1 if p & 1 else 1)
                for q in range(size):
                    d[q] = lane(s[q] + e * s[q + 1])
            for i in range(2, kw):
                e = lane(-1 if (p >> (i - 1)) & 1 else 1)
                for q in range(size):
                    d[q] = lane(d[q] + e * s[q + i])
            neg = src[(ch + ci) * n_combos + p]
            for q in range(size):
                neg[q] = lane(-d[q])


@njit(cache=True)
def _bit_tap_sweep(src, plane, off, wt, j, stop, acc):  # pragma: no cover - compiled
    # acc[q] = sum over taps t < stop of popcount(src[plane[t], off[t] + q] ^ wt[t, j]), three
    # taps per pass (stop is a multiple of 3), so acc is loaded and stored once per 3 taps
    L = acc.shape[0]
    for t in range(0, stop, 3):
        s0 = src[plane[t], off[t] : off[t] + L]
        s1 = src[plane[t + 1], off[t + 1] : off[t + 1] + L]
        s2 = src[plane[t + 2], off[t + 2] : off[t + 2] + L]
        w0, w1, w2 = wt[t, j], wt[t + 1, j], wt[t + 2, j]
        if t == 0:
            for q in range(L):
                acc[q] = _popcount(s0[q] ^ w0) + _popcount(s1[q] ^ w1) + _popcount(s2[q] ^ w2)
        else:
            for q in range(L):
                acc[q] += _popcount(s0[q] ^ w0) + _popcount(s1[q] ^ w1) + _popcount(s2[q] ^ w2)


@njit(cache=True)
def _bit_threshold_pass(src, plane, off, wt, j, t, acc, c, inv, o, bit):  # pragma: no cover
    # the last pass (taps t .. t + 2) fused with the threshold: with p = acc[q] (0 if t == 0)
    # plus the three popcounts, o[q] |= ((p >= c) ^ inv) << bit
    L = acc.shape[0]
    s0 = src[plane[t], off[t] : off[t] + L]
    s1 = src[plane[t + 1], off[t + 1] : off[t + 1] + L]
    s2 = src[plane[t + 2], off[t + 2] : off[t + 2] + L]
    w0, w1, w2 = wt[t, j], wt[t + 1, j], wt[t + 2, j]
    b = np.uint64(bit)
    if t == 0:
        for q in range(L):
            p = _popcount(s0[q] ^ w0) + _popcount(s1[q] ^ w1) + _popcount(s2[q] ^ w2)
            o[q] |= np.uint64((p >= c) ^ inv) << b
    else:
        for q in range(L):
            p = acc[q] + _popcount(s0[q] ^ w0) + _popcount(s1[q] ^ w1) + _popcount(s2[q] ^ w2)
            o[q] |= np.uint64((p >= c) ^ inv) << b


@njit(cache=True)
def _row_sweep(src, sel, off, j, stop, acc):  # pragma: no cover - compiled
    # acc[q] = sum over row taps r < stop of src[sel[r, j], off[r] + q], three per pass
    L = acc.shape[0]
    for r in range(0, stop, 3):
        s0 = src[sel[r, j], off[r] : off[r] + L]
        s1 = src[sel[r + 1, j], off[r + 1] : off[r + 1] + L]
        s2 = src[sel[r + 2, j], off[r + 2] : off[r + 2] + L]
        if r == 0:
            for q in range(L):
                acc[q] = s0[q] + s1[q] + s2[q]
        else:
            for q in range(L):
                acc[q] += s0[q] + s1[q] + s2[q]


@njit(cache=True)
def _row_threshold_pass(src, sel, off, j, r, acc, cut, inv, o, bit):  # pragma: no cover
    # the last pass (row taps r .. r + 2) fused with the threshold: with v = acc[q] (0 if
    # r == 0) plus the three rows, o[q] |= bit mask where (v >= cut) ^ inv, in o's lane type
    L = acc.shape[0]
    s0 = src[sel[r, j], off[r] : off[r] + L]
    s1 = src[sel[r + 1, j], off[r + 1] : off[r + 1] + L]
    s2 = src[sel[r + 2, j], off[r + 2] : off[r + 2] + L]
    m = o.dtype.type(1 << bit)
    z = o.dtype.type(0)
    c = acc.dtype.type(cut)
    lane = acc.dtype.type  # the sum in the lane type: int64 (numba's promotion) is 4x slower
    if r == 0:  # one pass (a 1-channel 3x3 kernel): no partial sums to load (-30% time)
        if inv:
            for q in range(L):
                o[q] |= m if lane(s0[q] + s1[q] + s2[q]) < c else z
        else:
            for q in range(L):
                o[q] |= m if lane(s0[q] + s1[q] + s2[q]) >= c else z
    elif inv:
        for q in range(L):
            o[q] |= m if lane(acc[q] + s0[q] + s1[q] + s2[q]) < c else z
    else:
        for q in range(L):
            o[q] |= m if lane(acc[q] + s0[q] + s1[q] + s2[q]) >= c else z


@njit(cache=True)
def _popcount_threshold(t, flip, k):  # pragma: no cover - compiled
    # (c, inv) with bit = (p >= c) ^ inv for the popcount p of y = k - 2 p:
    # y >= t <=> p <= floor((k - t) / 2); y <= t (flip) <=> p >= ceil((k - t) / 2)
    d = k - np.int64(t)
    if flip:
        return (d + 1) // 2, False
    return d // 2 + 1, True


@njit(cache=True)
def _store_outputs(acc, scale, shift, n0, j, geom, y):  # pragma: no cover - compiled
    # y[n, oy, ox, j] = shift + scale * acc at the sweep position of output (oy, ox) of n
    _, ho, wo, _ = y.shape
    hp, wp, sh, sw = geom.hp, geom.wp, geom.sh, geom.sw
    for b in range(min(geom.block, y.shape[0] - n0)):
        for oy in range(ho):
            for ox in range(wo):
                y[n0 + b, oy, ox, j] = shift + scale * acc[b * hp * wp + oy * sh * wp + ox * sw]


@njit(cache=True)
def _or_shifted(o, d, tmp):  # pragma: no cover - compiled
    # o[q] |= o[q + d] for q < len(o) - d, through tmp: one long vectorised loop per pass (rows
    # of an image are too short for 64-lane vectors; in place, the overlap blocks them)
    m = o.shape[0] - d
    r = o[d:]
    for q in range(m):
        tmp[q] = o[q] | r[q]
    for q in range(m):
        o[q] = tmp[q]


@njit(cache=True)
def _scatter_block(ob, n0, nb, geom, tmp, out):  # pragma: no cover - compiled
    # out[n0 + b, qy, qx]: the OR of ob over the (ph, pw) pool window (kernel = stride; (1, 1) =
    # a plain copy) of the conv outputs of sample b of the block. ob holds lanes of lb bits
    # (uint8 .. uint64), lane row g = bits lb (g % per) .. of output word g // per. Pooled over
    # whole sweeps in the lane domain first; only the outputs are then gathered and widened
    _, hq, wq, wco = out.shape
    hp, wp, sh, sw, ph, pw = geom.hp, geom.wp, geom.sh, geom.sw, geom.ph, geom.pw
    lb = 8 * ob.itemsize
    per = 64 // lb
    for g in range(ob.shape[0]):
        for _ in range(1, ph):  # after pass i, o[q] = OR of rows q .. q + i
            _or_shifted(ob[g], sh * wp, tmp)
        for _ in range(1, pw):
            _or_shifted(ob[g], sw, tmp)
    step = pw * sw
    if wco == 1:  # one word per pixel: each row of words is contiguous (vectorised stores)
        flat = out.reshape(-1)
        for b in range(nb):
            for qy in range(hq):
                d = flat[((n0 + b) * hq + qy) * wq :][:wq]
                at = b * hp * wp + qy * ph * sh * wp
                if step == 1:  # unpooled: contiguous lanes too (29 -> 14 us, uint8 conv)
                    o = ob[0, at:][:wq]
                    for qx in range(wq):
                        d[qx] = np.uint64(o[qx])
                    for g in range(1, ob.shape[0]):
                        o = ob[g, at:][:wq]
                        shift = np.uint64(lb * g)
                        for qx in range(wq):
                            d[qx] |= np.uint64(o[qx]) << shift
                else:
                    o = ob[0, at::step][:wq]
                    for qx in range(wq):
                        d[qx] = np.uint64(o[qx])
                    for g in range(1, ob.shape[0]):
                        o = ob[g, at::step][:wq]
                        shift = np.uint64(lb * g)
                        for qx in range(wq):
                            d[qx] |= np.uint64(o[qx]) << shift
        return
    for b in range(nb):
        img = out[n0 + b]
        for qy in range(hq):
            dst = img[qy]
            for k in range(wco):
                for qx in range(wq):
                    dst[qx, k] = 0
            for g in range(ob.shape[0]):
                o = ob[g, b * hp * wp + qy * ph * sh * wp :]
                k = g // per
                shift = np.uint64(lb * (g - k * per))
                for qx in range(wq):
                    dst[qx, k] |= np.uint64(o[qx * step]) << shift


@njit(cache=True)
def _task_blocks(n, B, task, tasks):  # pragma: no cover - compiled
    # blocks [b0, b1) of task `task` of `tasks`: equal shares of the ceil(n / B) blocks, so each
    # thread allocates its scratch once and both get the same number of samples
    nblk = (n + B - 1) // B
    return task * nblk // tasks, (task + 1) * nblk // tasks


# -- narrow binary convs: byte planes ---------------------------------------------------------
# With C <= 32 channels a pixel's word holds at most 4 bytes: the sweep reads byte plane p
# (channels 8p .. 8p + 7 of every pixel) once per kernel pixel, so 32 positions share an AVX2
# vector whatever C is, and the popcount of a byte is the CPU's cheapest (one vpshufb pair, or
# vpopcntb). Wider uint16 / uint32 lanes paid 1.3x / 1.6x per bit to combine byte counts.
# Sums of up to BYTE_TAPS_PER_SUM byte taps stay in uint8; longer kernels add such partial sums
# into uint16. The thresholded bits are assembled in uint8 rows (8 output channels each).

#: Byte taps summed in one uint8 partial sum (8 bits each: <= 240, and a whole number of passes).
BYTE_TAPS_PER_SUM = 30
#: The same in passes of the nibble-table sweep.
NIBBLE_PASSES_PER_SUM = BYTE_TAPS_PER_SUM // NIBBLE_TAPS


@njit(cache=True)
def _fill_byte_planes(x, n0, pad, geom, src):  # pragma: no cover - compiled
    # src[p]: byte p of every pixel of samples n0 .. n0 + B - 1, padded planes end to end.
    # One plane per loop: with the planes innermost the copy did not vectorise (+20 us of 170)
    _, h, w, _ = x.shape
    pt, pl, hp, wp = geom.pt, geom.pl, geom.hp, geom.wp
    planes = src.shape[0]
    for p in range(planes):
        src[p] = pad[p]
    for p in range(planes):
        shift = np.uint64(8 * p)
        for b in range(min(geom.block, x.shape[0] - n0)):
            for y in range(h):
                row = src[p, b * hp * wp + (y + pt) * wp + pl :]
                for xx in range(w):
                    row[xx] = x[n0 + b, y, xx, 0] >> shift


@njit(cache=True)
def _pixel_tap_sweep(src, off, wt, j, acc):  # pragma: no cover - compiled
    # acc[q] = sum_t popcount(src[off[t] + q] ^ wt[t, j]) over every kernel pixel t, three taps
    # per pass (acc loaded and stored once per 3 taps), then the remaining taps one by one
    L = acc.shape[0]
    T = off.shape[0]
    acc[:] = 0
    t3 = T - T % 3
    for t in range(0, t3, 3):
        s0 = src[off[t] : off[t] + L]
        s1 = src[off[t + 1] : off[t + 1] + L]
        s2 = src[off[t + 2] : off[t + 2] + L]
        w0, w1, w2 = wt[t, j], wt[t + 1, j], wt[t + 2, j]
        for q in range(L):
            acc[q] += (_popcount_lane(s0[q] ^ w0) + _popcount_lane(s1[q] ^ w1)
                       + _popcount_lane(s2[q] ^ w2))
    for t in range(t3, T):
        s0 = src[off[t] : off[t] + L]
        w0 = wt[t, j]
        for q in range(L):
            acc[q] += _popcount_lane(s0[q] ^ w0)


@njit(cache=True)
def _lane_threshold(acc, cut, inv, o, bit):  # pragma: no cover - compiled
    # o[q] |= ((acc[q] >= cut) ^ inv) << bit, in the lane type of o: a select of the bit mask
    # (a shifted bool is widened to int64 by numba's integer rules, 4-6x slower)
    m = o.dtype.type(1 << bit)
    z = o.dtype.type(0)
    c = acc.dtype.type(cut)
    if inv:
        for q in range(acc.shape[0]):
            o[q] |= m if acc[q] < c else z
    else:
        for q in range(acc.shape[0]):
            o[q] |= m if acc[q] >= c else z


@njit(cache=True, inline="always")
def _byte_tap_sums(src, boff, bw, j, acc, part):  # pragma: no cover - compiled
    # acc[q] = sum over byte taps i of popcount(src[boff[i] + q] ^ bw[i, j]) (flat byte planes);
    # uint8 partial sums of BYTE_TAPS_PER_SUM taps, widened into acc where there are several
    n = boff.shape[0]
    if n <= BYTE_TAPS_PER_SUM:
        _pixel_tap_sweep(src, boff, bw, j, acc)
        return
    acc[:] = 0
    for i0 in range(0, n, BYTE_TAPS_PER_SUM):
        i1 = min(n, i0 + BYTE_TAPS_PER_SUM)
        _pixel_tap_sweep(src, boff[i0:i1], bw[i0:i1], j, part)
        for q in range(acc.shape[0]):
            acc[q] += part[q]


@njit(parallel=True, cache=True)
def _pixel_conv_nb(
    x, plane, toff, bw, pad, sums, tables, geom, thresh, flip, bits, y
):  # pragma: no cover - compiled
    # binary conv over byte planes (bw: (byte taps, out) uint8; byte tap i reads plane plane[i]
    # at offset toff[i] = ky Wp + kx): per task (one per thread) a run of sample blocks; fused
    # threshold into bits if thresh.size, else y = K - 2 p. Sums in the dtype of `sums`.
    # tables None: XOR + popcount sweeps; else nibble-table sweeps (.nibbles, AVX2 only: the
    # branch is pruned when tables is None, so other hosts never compile it)
    hp, wp, L, k, B = geom.hp, geom.wp, geom.sweep, geom.fan_in, geom.block
    fuse = thresh.shape[0] > 0
    co = bw.shape[1]
    n = x.shape[0]
    tasks = geom.tasks
    group = 1 if tables is None else NIBBLE_OUTPUTS  # output channels per sweep
    for task in prange(tasks):
        b0, b1 = _task_blocks(n, B, task, tasks)
        span_max = (B - 1) * hp * wp + L
        lanes_max = -(-span_max // NIBBLE_LANES) * NIBBLE_LANES  # nibble sweeps: whole vectors
        size = max(B * hp * wp, lanes_max + toff.max())
        src = np.empty((pad.shape[0], size), np.uint8)
        flat = src.reshape(-1)
        lo, hi = np.empty_like(flat), np.empty_like(flat)
        boff = plane * size + toff
        acc_all = np.empty((group, lanes_max), sums.dtype)
        part_all = np.empty((group, lanes_max), np.uint8)
        rows = (co + 7) // 8 if fuse else 0
        ob_all = np.empty(rows * span_max, np.uint8)
        tmp = np.empty(span_max, np.uint8)  # pooling scratch
        for blk in range(b0, b1):
            n0 = blk * B
            nb = min(B, n - n0)
            span = (nb - 1) * hp * wp + L
            lanes = -(-span // NIBBLE_LANES) * NIBBLE_LANES
            _fill_byte_planes(x, n0, pad, geom, src)
            if tables is not None:
                split_nibbles(flat, lo, hi)
            ob = ob_all[: rows * span].reshape(rows, span)  # C order: vectorised rows
            ob[:] = 0
            for j0 in range(0, co, group):
                if tables is None:
                    _byte_tap_sums(flat, boff, bw, j0, acc_all[0, :span], part_all[0, :span])
                else:
                    nibble_tap_sums(lo, hi, boff, tables, j0 // group, NIBBLE_PASSES_PER_SUM,
                                    acc_all[:, :lanes], part_all[:, :lanes])
                for j in range(j0, min(co, j0 + group)):
                    acc = acc_all[j - j0, :span]
                    if fuse:
                        cut, inv = _popcount_threshold(thresh[j], flip[j], k)
                        _lane_threshold(acc, min(max(cut, 0), k + 1), inv, ob[j >> 3], j & 7)
                    else:
                        _store_outputs(acc, -2, k, n0, j, geom, y)
            if fuse:
                _scatter_block(ob, n0, nb, geom, tmp, bits)


@njit(parallel=True, cache=True)
def _binary_conv_nb(
    x, plane, ky, kx, wt, pad, groups, geom, thresh, flip, bits, y
):  # pragma: no cover - compiled
    # geom: see _conv_args. Each task (one per thread) sweeps a run of blocks of B samples;
    # fused threshold into bits if thresh.size, else int outputs y = K - 2 popcount
    c, hp, wp, L, k, B = geom.channels, geom.hp, geom.wp, geom.sweep, geom.fan_in, geom.block
    fuse = thresh.shape[0] > 0
    T, co = wt.shape
    off = ky * wp + kx
    n = x.shape[0]
    tasks = geom.tasks
    for task in prange(tasks):
        b0, b1 = _task_blocks(n, B, task, tasks)
        span_max = (B - 1) * hp * wp + L  # sweep positions of a whole block
        size = max(B * hp * wp, span_max + off.max())  # the planes, or the furthest tap read
        src = np.empty((pad.shape[0] + groups.shape[0] + 1, size), np.uint64)
        acc_all = np.empty(span_max, np.int64)
        rows = (co + 63) // 64 if fuse else 0
        ob_all = np.empty(rows * span_max, np.uint64)
        tmp = np.empty(span_max, np.uint64)  # pooling scratch
        for blk in range(b0, b1):
            n0 = blk * B
            nb = min(B, n - n0)
            span = (nb - 1) * hp * wp + L
            _fill_bit_sources(x, n0, pad, groups, c, geom, src)
            acc = acc_all[:span]
            ob = ob_all[: rows * span].reshape(rows, span)  # C order: vectorised rows
            ob[:] = 0
            for j in range(co):
                if fuse:
                    _bit_tap_sweep(src, plane, off, wt, j, T - 3, acc)
                    cut, inv = _popcount_threshold(thresh[j], flip[j], k)
                    _bit_threshold_pass(src, plane, off, wt, j, T - 3, acc, cut, inv, ob[j >> 6],
                                        j & 63)
                else:
                    _bit_tap_sweep(src, plane, off, wt, j, T, acc)
                    _store_outputs(acc, -2, k, n0, j, geom, y)
            if fuse:
                _scatter_block(ob, n0, nb, geom, tmp, bits)


@njit(parallel=True, cache=True)
def _uint8_conv_nb(
    u, plane, ky, kx, wt, kh, kw, geom, cut, flip, lanes, bits, y
):  # pragma: no cover - compiled
    # as _binary_conv_nb on a uint8 NCHW image, over row combinations (_row_selectors): a
    # 3x3 kernel is 3 row taps per channel instead of 9 pixel taps. Exact sums (|y| <= 255 K)
    # in the lanes of cut's dtype (int16 where 255 K fits: twice the int32 vector width);
    # output bit j = (y >= cut[j]) ^ flip[j] into unsigned lanes of the same width (`lanes`'
    # dtype), widened to words only at the (pooled) outputs
    hp, wp, L, B = geom.hp, geom.wp, geom.sweep, geom.block
    fuse = cut.shape[0] > 0
    co = wt.shape[1]
    sel, off = _row_selectors(plane, ky, kx, wt, u.shape[1], kh, kw, wp)
    R = sel.shape[0]
    n_planes = 2 * u.shape[1] * (1 << (kw - 1)) + 1
    n = u.shape[0]
    lb = 8 * lanes.itemsize
    tasks = geom.tasks
    for task in prange(tasks):
        b0, b1 = _task_blocks(n, B, task, tasks)
        span_max = (B - 1) * hp * wp + L
        src = np.empty((n_planes, max(B * hp * wp, span_max + off.max())), cut.dtype)
        src[-1] = 0
        s = np.empty(src.shape[1] + kw - 1, cut.dtype)
        acc_all = np.empty(span_max, cut.dtype)
        rows = (co + lb - 1) // lb if fuse else 0
        ob_all = np.empty(rows * span_max, lanes.dtype)
        tmp = np.empty(span_max, lanes.dtype)  # pooling scratch
        for blk in range(b0, b1):
            n0 = blk * B
            nb = min(B, n - n0)
            span = (nb - 1) * hp * wp + L
            _fill_row_combos(u, n0, geom, kw, s, src)
            acc = acc_all[:span]
            ob = ob_all[: rows * span].reshape(rows, span)  # C order: vectorised rows
            ob[:] = 0
            for j in range(co):
                if fuse:
                    _row_sweep(src, sel, off, j, R - 3, acc)
                    _row_threshold_pass(src, sel, off, j, R - 3, acc, cut[j], flip[j],
                                        ob[j // lb], j % lb)
                else:
                    _row_sweep(src, sel, off, j, R, acc)
                    _store_outputs(acc, 1, 0, n0, j, geom, y)
            if fuse:
                _scatter_block(ob, n0, nb, geom, tmp, bits)


# -- public wrappers -------------------------------------------------------------------------


_LANE_MAX = {np.dtype(t): int(np.iinfo(t).max) for t in (np.int16, np.int32)}


def _clip_to(t: np.ndarray, dtype) -> np.ndarray:
    """Thresholds as ``dtype``, clipped to +-max(dtype): with every ``|y| < max(dtype)`` a
    clipped threshold decides ``y >= t`` and ``y <= t`` as the original does (sentinels
    included)."""
    top = _LANE_MAX[np.dtype(dtype)]
    return np.minimum(np.maximum(t, -top), top).astype(dtype)  # np.clip: 4x slower here


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


class _with_threads:
    """numba's thread count set to ``threads`` for the block (None: unchanged). Left alone
    when it already is ``threads``: setting it and back cost 3 us a call (a tenth of the
    packed ViT's time at batch 1, 17 kernel calls). A class, not a generator context
    manager: entering and leaving one of those cost 1.3 us per kernel call."""

    __slots__ = ("threads", "old")

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self.old: int | None = None

    def __enter__(self) -> None:
        if self.threads is not None:
            old = numba.get_num_threads()
            if old != self.threads:
                numba.set_num_threads(int(self.threads))
                self.old = old

    def __exit__(self, *exc: object) -> None:
        if self.old is not None:
            numba.set_num_threads(self.old)


@njit(cache=True)
def _bounds_nb(t, f, off, lo, hi):  # pragma: no cover - compiled
    # lo[j] <= y - off[j] <= hi[j] <=> y >= t[j] (y <= t[j] where f[j]), clipped to int32;
    # off empty = 0. One loop: the NumPy version cost ~10 us a layer, a third of batch 1
    i32_min = np.int64(-(2**31))
    i32_max = np.int64(2**31 - 1)
    for j in range(t.shape[0]):
        d = t[j] - (off[j] if off.shape[0] else 0)
        d = min(max(d, i32_min), i32_max)
        if f[j]:
            lo[j], hi[j] = i32_min, d
        else:
            lo[j], hi[j] = d, i32_max


def _bounds(
    thresh: np.ndarray, flip: np.ndarray, n: int, offset: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` int32 with ``bit = lo <= v <= hi`` equivalent to ``y >= t`` (``y <= t``
    where ``flip``) for ``v = y - offset``. Clipping to int32 keeps the meaning because every
    pre-activation satisfies ``|v| < 2^31 - 1`` (``|y| <= 255 K``)."""
    t = np.asarray(thresh).reshape(-1)
    f = np.asarray(flip).reshape(-1)
    if t.shape != (n,) or f.shape != (n,):
        raise ValueError(f"thresh and flip need shape ({n},), got {t.shape} and {f.shape}")
    off = np.zeros(0, np.int64) if offset is None else np.asarray(offset, dtype=np.int64)
    lo = np.empty(n, np.int32)
    hi = np.empty(n, np.int32)
    _bounds_nb(t.astype(np.int64, copy=False), f.astype(np.bool_, copy=False), off, lo, hi)
    return lo, hi


def _tile_rows(a: np.ndarray, b: np.ndarray, threads: int | None = None) -> int:
    """Tile rows of the XNOR GEMM (a multiple of 4, the micro-kernel's): TILE_ROWS, halved
    until there are two tiles per thread, so small layers (batch 64, 10-256 outputs: one or
    two tiles, of 192 and 64 columns) give every thread an equal share."""
    tr, threads = TILE_ROWS, threads or numba.get_num_threads()
    ntj = -(-b.shape[0] // TILE_COLS)
    while tr > 4 and -(-a.shape[0] // tr) * ntj < 2 * threads:
        tr //= 2
    return tr


def xnor_gemm(a: np.ndarray, b: np.ndarray, k: int, *, threads: int | None = None) -> np.ndarray:
    """Binary GEMM: ``out[i, j] = k - 2 * popcount(a[i] ^ b[j])`` as int32, shape (M, N).

    ``a`` (M, W) and ``b`` (N, W) are packed +-1 rows of length ``k`` (padding bits 0).
    """
    a, b = _check_pair(a, b, k)
    with _with_threads(threads):
        return xnor_gemm_runner(a.shape[0], b, k, threads=threads)(a)


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
    with _with_threads(threads):
        return xnor_gemm_threshold_runner(a.shape[0], b, k, thresh, flip, threads=threads)(a)


# -- runners: a kernel call with everything but its input prepared ------------------------------
# An engine calls each layer with the same shapes again and again; a runner does the checks,
# the threshold bounds, the geometry and the kernel choice once. At batch 1 those cost more
# than the kernels: the suite CNN's 10 steps took 198 us through the checked wrappers and 60 us
# in the kernels alone. A runner takes a C-contiguous input of the prepared shape and runs at
# the thread count current when it runs (the engine sets it once per pass).


#: The AVX2 nibble-table GEMM (:func:`_nibble_columns_nb`) runs from 2 rows per thread (a pair
#: of rows per pass) and :data:`COLUMN_MIN_OUTPUTS` outputs, up to this many words per row
#: (measured: 1.4-1.6x the tiled and column XOR kernels from 2 to 1024 rows of 2048 and 4096
#: bits, on 1 and 2 threads; 1.2x at the suite CNN's 4-5 words; AVX2 EPYC).
NIBBLE_COLUMN_MAX_WORDS = 64


def _use_nibble_columns(m: int, b: np.ndarray, threads: int) -> bool:
    return (nibble_sweeps() and m >= NIBBLE_OUTPUTS * threads
            and b.shape[0] >= COLUMN_MIN_OUTPUTS and b.shape[1] <= NIBBLE_COLUMN_MAX_WORDS)


def _gemm_call(m: int, b: np.ndarray, k: int, lo: np.ndarray, hi: np.ndarray, threads):
    """``(kernel, args before A, args after A)`` of the XNOR GEMM of ``m`` rows against ``b``:
    the column, row or tiled kernel, into int32 ``y`` (lo empty) or packed bits."""
    a = np.empty((m, b.shape[1]), np.uint64)  # only its shape decides
    k64 = np.int64(k)
    threads = threads or numba.get_num_threads()
    if _use_nibble_columns(m, b, threads):
        tasks = min(-(-m // NIBBLE_OUTPUTS), threads)
        return _nibble_columns_nb, (*weight_planes(b), tasks, k64, lo, hi)
    if _use_columns(a, b):
        return _xnor_columns_nb, (np.ascontiguousarray(b.T), k64, lo, hi)
    if _use_rows(a, b):
        return _xnor_rows_nb, (b, k64, lo, hi)
    if lo.shape[0]:
        return _xnor_gemm_threshold_nb, (b, k64, lo, hi, _tile_rows(a, b, threads))
    return _xnor_gemm_nb, (b, k64, _tile_rows(a, b, threads))


def xnor_gemm_runner(m: int, b: np.ndarray, k: int, *, threads: int | None = None):
    """:func:`xnor_gemm` for inputs of ``m`` rows: a callable ``a -> int32 (m, N)``."""
    b = _packed_2d(b, "b")
    nothing = np.zeros(0, np.int32)
    kernel, pre = _gemm_call(m, b, k, nothing, nothing, threads)
    n = b.shape[0]
    tiled = kernel is _xnor_gemm_nb
    no_bits = np.zeros((1, 1), np.uint64)

    def run(a: np.ndarray) -> np.ndarray:
        out = np.empty((m, n), dtype=np.int32)
        if tiled:
            kernel(a, *pre, out)
        else:
            kernel(a, *pre, out, no_bits)
        return out

    return run


def xnor_gemm_threshold_runner(
    m: int, b: np.ndarray, k: int, thresh: np.ndarray, flip: np.ndarray, *,
    threads: int | None = None,
):
    """:func:`xnor_gemm_threshold` for inputs of ``m`` rows: a callable ``a -> bits``."""
    b = _packed_2d(b, "b")
    n = b.shape[0]
    lo, hi = _bounds(thresh, flip, n)
    kernel, pre = _gemm_call(m, b, k, lo, hi, threads)
    tiled = kernel is _xnor_gemm_threshold_nb
    no_y = np.zeros((1, 1), np.int32)
    words = (n + 63) // 64

    def run(a: np.ndarray) -> np.ndarray:
        out = np.zeros((m, words), dtype=np.uint64)  # the kernels OR bits into it
        if tiled:
            kernel(a, *pre, out)
        else:
            kernel(a, *pre, no_y, out)
        return out

    return run


def compact_pixels_runner(m: int, words: int, c: int, *, threads: int | None = None):
    """For rows of ``words`` pixel words with ``c < 64`` real (low) bits each, as a flatten of
    a narrow conv leaves them: a callable ``x (m, words) -> (m, n_words(words * c))`` with
    those bits end to end. The suite CNN's 3x3x32 flatten is 9 words half padding; compacted
    to 5, its 288 -> 256 dense layer does 5/9 of the XNOR work."""
    if not 0 < c < 64:
        raise ValueError(f"compact_pixels needs 1..63 bits per word, got {c}")
    out_words = (words * c + 63) // 64

    def run(x: np.ndarray) -> np.ndarray:
        out = np.empty((m, out_words), np.uint64)
        _compact_pixels_nb(x, c, out)
        return out

    return run


def xnor_scores_runner(
    m: int, b: np.ndarray, k: int, scale: np.ndarray, shift: np.ndarray, *,
    threads: int | None = None,
):
    """The output layer's ``float32(xnor_gemm(a, b, k)) * scale + shift`` for inputs of ``m``
    rows in one kernel: a callable ``a -> float32 (m, N)``. The suite CNN's 256 -> 10 layer
    took 9 us at batch 64 as a tiled GEMM (a 48 KB tile buffer for 10 columns) plus numpy's
    scale and shift, 5 us fused."""
    b = _packed_2d(b, "b")
    n = b.shape[0]
    scale, shift = (np.ascontiguousarray(np.broadcast_to(v, (n,)), np.float32)
                    for v in (scale, shift))
    rows = max(1, -(-m // (4 * (threads or numba.get_num_threads()))))  # 4 tasks per thread
    k64 = np.int64(k)

    def run(a: np.ndarray) -> np.ndarray:
        out = np.empty((m, n), np.float32)
        _xnor_scores_nb(a, b, k64, scale, shift, rows, out)
        return out

    return run


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
            z = np.zeros(1, dtype=np.int32)
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
    lo, hi = _bounds(thresh, flip, n)
    if planes.shape[2] != 1:
        return threshold_pack(
            bitplane_gemm(planes, b, threads=threads), thresh, flip, threads=threads
        )
    pcw = np.bitwise_count(b).sum(axis=1, dtype=np.int64)
    out = np.zeros((planes.shape[0], (n + 63) // 64), dtype=np.uint64)
    with _with_threads(threads):
        dummy = np.zeros((1, 1), dtype=np.int32)
        _bitplane_w1_nb(
            np.ascontiguousarray(planes[:, :, 0]), b[:, 0].copy(), pcw, lo, hi, True, dummy, out
        )
    return out


def threshold_pack(
    y: np.ndarray, thresh: np.ndarray, flip: np.ndarray, *, threads: int | None = None
) -> np.ndarray:
    """Packed bits of ``y >= thresh`` (``y <= thresh`` where ``flip``), per column of (M, N) y."""
    y = np.asarray(y)
    if y.ndim != 2 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be a 2-D integer array, got {y.dtype} {y.shape}")
    if y.dtype != np.int32:  # the bounds are int32: pre-activations always fit
        i32 = np.iinfo(np.int32)
        if y.size and (y.min() <= i32.min or y.max() >= i32.max):
            raise ValueError("y must lie strictly inside the int32 range")
        y = y.astype(np.int32)
    y = np.ascontiguousarray(y)
    lo, hi = _bounds(thresh, flip, y.shape[1])
    out = np.empty((y.shape[0], (y.shape[1] + 63) // 64), dtype=np.uint64)
    with _with_threads(threads):
        _threshold_pack_nb(y, lo, hi, out)
    return out


#: Target sweep length (positions) of one task: long vector loops, L1-resident planes.
SWEEP_POSITIONS = 1024


class ConvGeom(NamedTuple):
    """Static geometry of one conv call, passed to the compiled kernels (numba reads the fields
    of a named tuple by name)."""

    channels: int  # C, real input channels
    pt: int  # top padding
    pl: int  # left padding
    hp: int  # padded height Hp
    wp: int  # padded width Wp
    sweep: int  # L: stride-1 sweep positions per sample (whole padded rows to the last output)
    sh: int  # stride (rows)
    sw: int  # stride (columns)
    ph: int  # fused OR-pool kernel = stride (rows); 1 = none
    pw: int  # fused OR-pool (columns)
    fan_in: int  # K = kh * kw * C
    block: int  # B: samples per block
    tasks: int  # parallel tasks (one per thread, at most one per block)


def _conv_plan(n, hw, taps, stride, padding, pool, threads):
    """``(geom, int_shape, bits_shape)`` of a conv call, computed once per input shape and
    kept in ``taps.plans`` (a layer's calls repeat; building it took ~5 us of ~100).

    ``geom`` is a :class:`ConvGeom`; its ``block`` samples per task have padded planes that,
    laid end to end, make one sweep of about :data:`SWEEP_POSITIONS` positions.
    """
    threads = threads or numba.get_num_threads()
    key = (n, tuple(hw), tuple(stride), tuple(padding), tuple(pool), threads)
    plan = taps.plans.get(key)
    if plan is not None:
        return plan
    hp, wp, ho, wo = conv_geometry(hw, taps.kernel, stride, padding)
    ph, pw = pool
    if min(ph, pw) < 1:
        raise ValueError(f"pool must be >= (1, 1), got {pool}")
    if taps.weight.shape[0] % TAPS_PER_PASS or TAPS_PER_PASS != 3:  # the passes are unrolled
        raise ValueError("taps must come in whole passes of 3 (build them with conv_taps)")
    pt, pb, pl, pr = padding
    # Shared padding: a row's right padding is the next row's left padding, a sample's bottom
    # rows the next sample's top rows (where they are no wider), so the sweep crosses fewer
    # padding positions: 64 instead of 81 per 7x7 sample (suite CNN's 7x7 convs -20% time).
    # Rows stay an even number of positions wide: odd widths (29, 15) made the 28x28 and 14x14
    # convs 5-8% slower than the unshared 30 and 16.
    hp, wp = hp - (pb if pb <= pt else 0), wp - (pr if pr <= pl else 0)
    wp += wp % 2
    sweep = ((ho - 1) * stride[0] + 1) * wp
    block = max(1, min(SWEEP_POSITIONS // (hp * wp), -(-n // threads)))
    # the task count is an argument: numba.get_num_threads() in compiled code made every conv
    # kernel uncachable (a ctypes global), so each process compiled them again
    tasks = max(1, min(-(-n // block), threads))
    geom = ConvGeom(*(int(v) for v in (taps.channels, pt, pl, hp, wp, sweep, *stride, ph, pw,
                                       taps.fan_in, block, tasks)))
    co = taps.weight.shape[1]
    plan = geom, (ho, wo, co), (ho // ph, wo // pw, (co + 63) // 64)
    taps.plans[key] = plan
    return plan


def _conv_args(n, hw, taps, stride, padding, pool, thresh, flip, threads):
    """Geometry (:func:`_conv_plan`), threshold arrays (empty: int outputs) and output shape
    of a conv call."""
    geom, int_shape, bits_shape = _conv_plan(n, hw, taps, stride, padding, pool, threads)
    if thresh is None:
        return geom, np.zeros(0, np.int32), np.zeros(0, np.bool_), int_shape
    co = int_shape[2]
    t = np.ascontiguousarray(thresh, dtype=np.int32)
    f = np.ascontiguousarray(flip, dtype=np.bool_)
    if t.shape != (co,) or f.shape != (co,):
        raise ValueError(f"thresh and flip need shape ({co},), got {t.shape} and {f.shape}")
    return geom, t, f, bits_shape


def _conv_outputs(n, t, shape):
    """(bits, y): the fused-threshold output and the int output, one of them a dummy."""
    if t.shape[0]:
        return np.empty((n, *shape), np.uint64), np.zeros((1, 1, 1, 1), np.int32)
    return np.zeros((1, 1, 1, 1), np.uint64), np.empty((n, *shape), np.int32)


def binary_conv2d(
    x: np.ndarray,
    taps: ConvTaps,
    stride: tuple[int, int],
    padding: tuple[int, int, int, int],
    thresh: np.ndarray | None = None,
    flip: np.ndarray | None = None,
    pool: tuple[int, int] = (1, 1),
    *,
    threads: int | None = None,
) -> np.ndarray:
    """Conv of packed NHWC bits (N, H, W, Wc) with +1 padding, computed over the source planes
    of :class:`~.reference.ConvTaps`. Returns int32 ``y`` (N, Ho, Wo, out), or with
    ``thresh``/``flip`` the packed output bits (N, Ho // ph, Wo // pw, n_words(out)), OR-pooled
    by ``pool = (ph, pw)`` (kernel = stride, floor mode; (1, 1) = no pooling).
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.uint64 or x.ndim != 4:
        raise ValueError(f"x must be a uint64 (N, H, W, words) image, got {getattr(x, 'shape', x)}")
    if x.shape[3] != taps.pad.shape[0]:
        raise ValueError(f"x has {x.shape[3]} words per pixel, the taps {taps.pad.shape[0]}")
    run = binary_conv2d_runner(x.shape, taps, stride, padding, thresh, flip, pool,
                               threads=threads)
    with _with_threads(threads):
        return run(np.ascontiguousarray(x))


def binary_conv2d_runner(
    shape: tuple[int, ...],
    taps: ConvTaps,
    stride: tuple[int, int],
    padding: tuple[int, int, int, int],
    thresh: np.ndarray | None = None,
    flip: np.ndarray | None = None,
    pool: tuple[int, int] = (1, 1),
    *,
    threads: int | None = None,
):
    """:func:`binary_conv2d` for images of ``shape`` (N, H, W, words): a callable ``x -> out``."""
    n = shape[0]
    geom, t, f, out_shape = _conv_args(n, shape[1:3], taps, stride, padding, pool, thresh, flip,
                                       threads)
    pixels = _pixel_taps(taps, geom.wp)
    if pixels is not None:
        kernel, pre = _pixel_conv_nb, (*pixels, geom, t, f)
    else:
        kernel, pre = _binary_conv_nb, (taps.plane, taps.ky, taps.kx, taps.weight, taps.pad,
                                        taps.groups, geom, t, f)
    fused = t.shape[0] > 0

    def run(x: np.ndarray) -> np.ndarray:
        bits, y = _conv_outputs(n, t, out_shape)
        kernel(x, *pre, bits, y)
        return bits if fused else y

    return run


def _pixel_taps(taps: ConvTaps, wp: int) -> tuple | None:
    """``(plane, toff, bw, pad, sums, tables)`` of the byte-plane conv (kept in
    ``taps.plans``), or None where :func:`pixel_sums` says word taps. ``tables`` are the
    nibble tables where :func:`.nibbles.nibble_sweeps` holds (taps then padded to whole
    passes), else None."""
    nibbles = nibble_sweeps()
    key = ("pixels", wp, nibbles)
    if key not in taps.plans:
        sums = pixel_sums(taps)
        if sums is None:
            taps.plans[key] = None
        else:
            planes = (taps.channels + 7) // 8
            n_px = taps.pixels.shape[0]
            t_px = np.arange(n_px)
            off = (t_px // taps.kernel[1]) * wp + t_px % taps.kernel[1]
            wbytes = taps.pixels.view(np.uint8).reshape(n_px, -1, 8)[:, :, :planes]  # LE bytes
            plane = np.repeat(np.arange(planes, dtype=np.int64)[None], n_px, 0).reshape(-1)
            toff = np.repeat(off.astype(np.int64), planes)
            bw = np.ascontiguousarray(wbytes.transpose(0, 2, 1).reshape(n_px * planes, -1))
            pad = np.frombuffer(taps.pad[:1].tobytes(), np.uint8)[:planes].copy()
            tables = None
            if nibbles:
                tables = nibble_tables(bw)
                extra = tables.shape[1] * NIBBLE_TAPS - plane.shape[0]  # zero tables read byte 0
                plane, toff = (np.pad(v, (0, extra)) for v in (plane, toff))
            taps.plans[key] = plane, toff, bw, pad, np.zeros(0, sums), tables
    return taps.plans[key]


def pixel_sums(taps: ConvTaps) -> type | None:
    """The sum type of the byte-plane binary conv (uint8 where its popcount sums up to
    ``K + 1`` fit a byte, else uint16), or None: word taps instead (33+ channels). Against one
    pixel per uint16 / uint32 lane, byte planes cut the suite CNN's 16->16 and 32->32 + pool
    layers by 15% (batch 64, 1 thread, AVX2 EPYC); their sweeps alone ran 1.3x / 1.6x faster."""
    if not taps.pixels.shape[0] or taps.channels > 32:
        return None
    byte_taps = taps.pixels.shape[0] * ((taps.channels + 7) // 8)
    return np.uint8 if byte_taps <= BYTE_TAPS_PER_SUM else np.uint16


def uint8_conv2d(
    u: np.ndarray,
    taps: ConvTaps,
    stride: tuple[int, int],
    padding: tuple[int, int, int, int],
    thresh: np.ndarray | None = None,
    flip: np.ndarray | None = None,
    pool: tuple[int, int] = (1, 1),
    *,
    threads: int | None = None,
) -> np.ndarray:
    """Conv of a uint8 NCHW image with zero padding as exact integer sums (+-1 weights);
    outputs as :func:`binary_conv2d`."""
    if not isinstance(u, np.ndarray) or u.dtype != np.uint8 or u.ndim != 4:
        raise ValueError(f"u must be a uint8 (N, C, H, W) image, got {getattr(u, 'shape', u)}")
    if u.shape[1] != taps.channels:
        raise ValueError(f"u has {u.shape[1]} channels, the taps {taps.channels}")
    run = uint8_conv2d_runner(u.shape, taps, stride, padding, thresh, flip, pool,
                              threads=threads)
    with _with_threads(threads):
        return run(np.ascontiguousarray(u))


def uint8_conv2d_runner(
    shape: tuple[int, ...],
    taps: ConvTaps,
    stride: tuple[int, int],
    padding: tuple[int, int, int, int],
    thresh: np.ndarray | None = None,
    flip: np.ndarray | None = None,
    pool: tuple[int, int] = (1, 1),
    *,
    threads: int | None = None,
):
    """:func:`uint8_conv2d` for images of ``shape`` (N, C, H, W): a callable ``u -> out``."""
    n = shape[0]
    geom, t, f, out_shape = _conv_args(n, shape[2:4], taps, stride, padding, pool, thresh, flip,
                                       threads)
    small = 255 * taps.fan_in < _LANE_MAX[np.dtype(np.int16)]
    lanes, bit_lanes = (np.int16, np.uint16) if small else (np.int32, np.uint32)
    # bit = y >= t, or y <= t <=> not y >= t + 1 where flip: one compare against `cut`
    cut = _clip_to(t.astype(np.int64) + f, lanes)
    pre = (taps.plane, taps.ky, taps.kx, taps.weight, *taps.kernel, geom, cut, f,
           np.zeros(0, bit_lanes))
    fused = t.shape[0] > 0

    def run(u: np.ndarray) -> np.ndarray:
        bits, y = _conv_outputs(n, t, out_shape)
        _uint8_conv_nb(u, *pre, bits, y)
        return bits if fused else y

    return run


# -- first dense layer from uint8 rows: int8 GEMM, int32 accumulation ----------------------------


#: Output columns per task of the numba int8 kernel (its int32 accumulators stay in L1).
INT8_COLS = 512

#: Below this many rows :func:`int8_matmul` runs the numba kernel: ``torch._int_mm`` repacks
#: the whole weight matrix on every call, which dominates (and varies 10x) at batch 1. The
#: first layer goes to bit planes below :data:`BITPLANE_MAX_ROWS` (= this), so the numba
#: kernel is left for hosts without torch (it was ~10x slower than torch at 8-16 rows).
INT8_TORCH_MIN_ROWS = 6


@njit(parallel=True, cache=True)
def _int8_matmul_nb(a, w, out):  # pragma: no cover - compiled
    # out[m, n] = sum_k a[m, k] * w[k, n] in int32, vectorised over n; tasks are blocks of
    # INT8_COLS columns x 8 rows, so batch 1 uses every thread too
    M, K = a.shape
    N = w.shape[1]
    nb = (N + INT8_COLS - 1) // INT8_COLS
    mb = (M + 7) // 8
    for t in prange(mb * nb):
        m0 = (t // nb) * 8
        n0 = (t % nb) * INT8_COLS
        n1 = min(N, n0 + INT8_COLS)
        for m in range(m0, min(M, m0 + 8)):
            row = out[m, n0:n1]
            row[:] = 0
            for k in range(K):
                v = np.int32(a[m, k])
                wk = w[k, n0:n1]
                for n in range(n1 - n0):
                    row[n] += v * np.int32(wk[n])


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a project dependency
        return None
    return torch


def int8_matmul(a8: np.ndarray, w: np.ndarray, *, use_torch: bool = True) -> np.ndarray:
    """Exact int8 (M, K) x int8 (K, N) -> int32 (M, N): ``torch._int_mm`` (from
    :data:`INT8_TORCH_MIN_ROWS` rows, if ``use_torch``) or the numba kernel.

    Exact for any K < 2^16 (|products| <= 2^14, int32 accumulation)."""
    torch = _torch() if use_torch and a8.shape[0] >= INT8_TORCH_MIN_ROWS else None
    if torch is not None:
        return torch._int_mm(torch.from_numpy(a8), torch.from_numpy(w)).numpy()
    out = np.empty((a8.shape[0], w.shape[1]), np.int32)
    _int8_matmul_nb(a8, w, out)
    return out


#: Float32 output bytes per oneDNN call: each block is thresholded while still cached, and the
#: allocator reuses it. 784 x 4096 with its threshold at batch 1024, 1 thread: 6.4 / 8.5 ms
#: (best / median) in one call, 5.2 / 5.4 ms in blocks of 256 rows (4 MB); 784 x 512: one
#: 2 MB call ~690 us, four 256-row blocks ~870 us.
ONEDNN_BLOCK_BYTES = 4 << 20


def _onednn_blocks(u: np.ndarray, wts: Int8Weights):
    """``(row slice, float32 u @ w)`` per block of rows (:data:`ONEDNN_BLOCK_BYTES`) from oneDNN's
    quantized linear (uint8 x int8, int32 sums: VNNI / AMX-INT8 where the CPU has them), or
    None where it is not available. Exact: scales 1, zero points 0, and every
    ``|y| <= 255 K < 2^24`` is a float32 integer. It needs no ``u - 128`` shift and packs the
    weights once: 1.8x ``torch._int_mm`` for 784 x 4096 at batch 1024 on one thread, 1.2x
    for 784 x 512."""
    torch = _torch()
    packed = _onednn_weights(wts, torch)
    if packed is None:
        return None
    w, scales, zero_points = packed

    def block(sl):
        return torch.ops.onednn.qlinear_pointwise(
            torch.from_numpy(u[sl]), 1.0, 0, w, scales, zero_points, None, 1.0, 0,
            torch.float32, "none", [], "").numpy()

    step = max(1, ONEDNN_BLOCK_BYTES // (4 * wts.w.shape[1]))
    rows = (slice(r, r + step) for r in range(0, u.shape[0], step))
    return ((sl, block(sl)) for sl in rows)


def _onednn_weights(wts: Int8Weights, torch) -> tuple | None:
    """oneDNN's packed weights with unit scales and zero offsets (made once, in
    ``wts.plans``), or None: no torch, a torch built without oneDNN, or ``255 K >= 2^24``."""
    if torch is None or 255 * wts.w.shape[0] >= 2**24:
        return None
    if "onednn" not in wts.plans:
        n = wts.w.shape[1]
        try:
            w = torch.from_numpy(np.ascontiguousarray(wts.w.T))
            wts.plans["onednn"] = (torch.ops.onednn.qlinear_prepack(w, None), torch.ones(n),
                                   torch.zeros(n, dtype=torch.int64))
        except (AttributeError, RuntimeError):
            wts.plans["onednn"] = None
    return wts.plans["onednn"]


def _check_rows(u: np.ndarray, wts: Int8Weights) -> None:
    if not isinstance(u, np.ndarray) or u.dtype != np.uint8 or u.ndim != 2:
        raise ValueError(f"u must be 2-D uint8 rows, got {getattr(u, 'dtype', type(u))}")
    if u.shape[1] != wts.w.shape[0] or wts.w.dtype != np.int8:
        raise ValueError(f"u has {u.shape[1]} columns, the int8 weights {wts.w.shape}")


def _shifted(u: np.ndarray) -> np.ndarray:
    return np.bitwise_xor(u, np.uint8(128)).view(np.int8)  # u - 128, exactly


@contextmanager
def _torch_threads(threads: int | None):
    """torch's intra-op thread count set to ``threads`` for the block (None: unchanged)."""
    torch = _torch()
    if threads is None or torch is None or torch.get_num_threads() == threads:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(old)


#: Below this many rows the first dense layer runs on its bit planes with the column kernel
#: (L1/L2-resident packed weights, 8x smaller than the int8 ones the GEMV would stream).
BITPLANE_MAX_ROWS = 6


def _bitplane_columns(
    u: np.ndarray, wts: Int8Weights, lo: np.ndarray, hi: np.ndarray, fused: bool
) -> np.ndarray:
    """The first layer from the bit planes of a few rows ``u`` (see :func:`uint8_gemm`):
    int32 ``y`` (M, N), or the bits ``lo <= y <= hi`` (M, n_words(N)) if ``fused``."""
    planes = bitplanes(u).reshape(8 * u.shape[0], -1)
    n = wts.bits_t.shape[1]
    if fused:
        out = np.zeros((u.shape[0], (n + 63) // 64), np.uint64)
        _bitplane_columns_nb(planes, wts.bits_t, wts.pcw, lo, hi, np.zeros((1, 1), np.int32),
                             out)
        return out
    y = np.empty((u.shape[0], n), np.int32)
    nothing = np.zeros(0, np.int32)
    _bitplane_columns_nb(planes, wts.bits_t, wts.pcw, nothing, nothing, y,
                         np.zeros((1, 1), np.uint64))
    return y


@njit(parallel=True, cache=True)
def _pixel_tables_nb(u32, tabs):  # pragma: no cover - compiled
    for m in prange(u32.shape[0]):
        build_tables(tabs, u32, m, m)


@njit(cache=True)
def _table_sweep(tile, tabs, idx, m, nrows, b_lo, b_hi):  # pragma: no cover - compiled
    # tile[:nrows] = the subset sums of rows m .. m + nrows - 1 over blocks b_lo .. b_hi
    groups = tabs.shape[1]
    tile[:nrows] = 0
    step = TABLE_BLOCKS if nrows == TABLE_ROWS else ROW_BLOCKS
    for b in range(b_lo, b_hi, step):
        c0 = (b - b_lo) * BLOCK_COLS
        for g0 in range(0, groups, RUN_GROUPS):
            g1 = min(groups, g0 + RUN_GROUPS)
            if nrows == TABLE_ROWS:
                table_tile(tile, tabs, idx, m, b, c0, g0, g1)
            else:
                table_row(tile, tabs, idx, m, b, c0, g0, g1)


@njit(parallel=True, cache=True)
def _table_gemm_nb(pixels, tabs, idx, task_rows, lo, hi, y, out):  # pragma: no cover - compiled
    # a task: TABLE_CHUNK_BLOCKS column blocks (their index planes in L2) over task_rows rows,
    # in tiles of TABLE_ROWS rows and a last odd row; each tile emitted while in L1 as
    # y = 2 (sum over the +1 weights) - (sum of the row), thresholded into out if lo is given
    mrows = pixels.shape[0]
    nblocks = idx.shape[0]
    chunks = (nblocks + TABLE_CHUNK_BLOCKS - 1) // TABLE_CHUNK_BLOCKS
    row_tasks = (mrows + task_rows - 1) // task_rows
    for task in prange(chunks * row_tasks):
        b_lo = (task % chunks) * TABLE_CHUNK_BLOCKS
        b_hi = min(nblocks, b_lo + TABLE_CHUNK_BLOCKS)
        c0, cols = b_lo * BLOCK_COLS, (b_hi - b_lo) * BLOCK_COLS
        m_hi = min(mrows, (task // chunks + 1) * task_rows)
        tile = np.empty((TABLE_ROWS, cols), np.int32)
        m = (task // chunks) * task_rows
        while m < m_hi:
            nrows = TABLE_ROWS if m + TABLE_ROWS <= m_hi else 1
            _table_sweep(tile, tabs, idx, m, nrows, b_lo, b_hi)
            for r in range(nrows):
                total = np.int32(0)
                for k in range(pixels.shape[1]):
                    total += pixels[m + r, k]
                row = tile[r]
                for j in range(cols):
                    row[j] = 2 * row[j] - total
                if lo.shape[0] > 0:
                    _pack_row(row, lo[c0 : c0 + cols], hi[c0 : c0 + cols], out[m + r, c0 >> 6 :])
                else:
                    y[m + r, c0 : c0 + cols] = row
            m += nrows


def _table_planes(wts: Int8Weights) -> np.ndarray:
    """The weights' index planes for the table tiles (:mod:`.pixel_tables`), made once."""
    if "tables" not in wts.plans:
        wts.plans["tables"] = index_planes(wts.w, BLOCK_COLS * ROW_BLOCKS)
    return wts.plans["tables"]


def _table_task_rows(m: int, threads: int | None) -> int:
    # up to TABLE_TASK_ROWS, fewer where a thread would get fewer than two tasks
    threads = threads or numba.get_num_threads()
    return max(TABLE_ROWS, min(TABLE_TASK_ROWS, 2 * -(-m // (4 * threads))))


def _padded_bounds(lo: np.ndarray, hi: np.ndarray, cols: int) -> tuple[np.ndarray, np.ndarray]:
    # padding columns get lo > hi: bit 0
    lo_p, hi_p = np.ones(cols, np.int32), np.zeros(cols, np.int32)
    lo_p[: lo.shape[0]], hi_p[: hi.shape[0]] = lo, hi
    return lo_p, hi_p


def _table_call(u: np.ndarray, idx: np.ndarray, n: int, task_rows: int,
                bounds: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """The first layer of ``u`` on the table tiles: int32 ``y`` (M, N), or where ``bounds``
    (padded to the planes' columns) the bits ``lo <= y <= hi`` (M, n_words(N)). Pixels are
    padded to the planes' groups."""
    (m, k), cols = u.shape, BLOCK_COLS * idx.shape[0]
    width = GROUP_PIXELS * idx.shape[1]
    pixels = u if k == width else np.zeros((m, width), np.uint8)
    if pixels is not u:
        pixels[:, :k] = u
    pixels = np.ascontiguousarray(pixels)
    tabs = np.empty((m, idx.shape[1], TABLE_BYTES), np.uint8)
    _pixel_tables_nb(pixels.view(np.uint32), tabs)
    if bounds is not None:
        out = np.empty((m, cols // 64), np.uint64)
        _table_gemm_nb(pixels, tabs, idx, task_rows, *bounds, np.zeros((1, 1), np.int32), out)
        words = (n + 63) // 64
        return out if out.shape[1] == words else np.ascontiguousarray(out[:, :words])
    y = np.empty((m, cols), np.int32)
    nothing = np.zeros(0, np.int32)
    _table_gemm_nb(pixels, tabs, idx, task_rows, nothing, nothing, y, np.zeros((1, 1), np.uint64))
    return y if cols == n else np.ascontiguousarray(y[:, :n])


def _table_layer(u: np.ndarray, wts: Int8Weights, lo: np.ndarray, hi: np.ndarray,
                 fused: bool) -> np.ndarray:
    """:func:`_table_call` with the weights' planes: thresholded by ``lo, hi`` if ``fused``."""
    idx = _table_planes(wts)
    bounds = _padded_bounds(lo, hi, BLOCK_COLS * idx.shape[0]) if fused else None
    return _table_call(u, idx, wts.w.shape[1], _table_task_rows(u.shape[0], None), bounds)


def _first_layer_kernel(m: int, tables: bool | None) -> str:
    # "tables" (the table tiles) where chosen (None: the host decides); else "bitplane" for a
    # few rows and "gemm" (oneDNN or the int8 GEMM) from BITPLANE_MAX_ROWS
    if table_first_layer() if tables is None else tables:
        return "tables"
    return "bitplane" if m < BITPLANE_MAX_ROWS else "gemm"


def uint8_gemm(
    u: np.ndarray,
    wts: Int8Weights,
    *,
    threads: int | None = None,
    use_torch: bool = True,
    tables: bool | None = None,
) -> np.ndarray:
    """First layer: ``y[m, n] = sum_k u[m, k] w[k, n]`` (int32) on the table tiles where
    ``tables`` (None: on AVX2 hosts without VNNI). Elsewhere below :data:`BITPLANE_MAX_ROWS` rows
    from bit planes, else on oneDNN's uint8 x int8 linear, else as ``(u - 128) w + 128 colsum``
    (an int8 GEMM). ``use_torch=False``: the numba kernels only."""
    _check_rows(u, wts)
    kernel = _first_layer_kernel(u.shape[0], tables)
    if kernel != "gemm":
        nothing = np.zeros(0, np.int32)
        layer = _bitplane_columns if kernel == "bitplane" else _table_layer
        with _with_threads(threads):
            return layer(u, wts, nothing, nothing, False)
    with _with_threads(threads), _torch_threads(threads):
        blocks = _onednn_blocks(np.ascontiguousarray(u), wts) if use_torch else None
        if blocks is not None:
            y = np.empty((u.shape[0], wts.w.shape[1]), np.int32)
            for sl, yf in blocks:
                y[sl] = yf  # float32 integers below 2^24: exact
            return y
        y = int8_matmul(_shifted(u), wts.w, use_torch=use_torch)
        _add_row_nb(y, 128 * wts.colsum)
    return y


def uint8_gemm_threshold(
    u: np.ndarray,
    wts: Int8Weights,
    thresh: np.ndarray,
    flip: np.ndarray,
    *,
    threads: int | None = None,
    use_torch: bool = True,
    tables: bool | None = None,
) -> np.ndarray:
    """First layer fused with the threshold: packed bits (M, n_words(N)), on the kernels of
    :func:`uint8_gemm`. On the int8 GEMM the ``128 colsum`` correction is folded into the
    bounds (``lo <= y0 + c <= hi <=> lo - c <= y0 <= hi - c``)."""
    _check_rows(u, wts)
    n = wts.w.shape[1]
    kernel = _first_layer_kernel(u.shape[0], tables)
    if kernel != "gemm":
        layer = _bitplane_columns if kernel == "bitplane" else _table_layer
        with _with_threads(threads):
            return layer(u, wts, *_bounds(thresh, flip, n), True)
    out = np.empty((u.shape[0], (n + 63) // 64), dtype=np.uint64)
    with _with_threads(threads), _torch_threads(threads):
        blocks = _onednn_blocks(np.ascontiguousarray(u), wts) if use_torch else None
        if blocks is not None:
            # float32 bounds, clipped to +-2^24: exact for |y| < 2^24, and a float32 compare
            # vectorises twice as wide as float32 against int32 (float64)
            lo, hi = (np.clip(v, -(2**24), 2**24).astype(np.float32)
                      for v in _bounds(thresh, flip, n))
            for sl, yf in blocks:
                _threshold_pack_nb(yf, lo, hi, out[sl])
            return out
        lo, hi = _bounds(thresh, flip, n, offset=128 * wts.colsum.astype(np.int64))
        y0 = int8_matmul(_shifted(u), wts.w, use_torch=use_torch)
        _threshold_pack_nb(y0, lo, hi, out)
    return out


def uint8_gemm_threshold_runner(
    m: int, wts: Int8Weights, thresh: np.ndarray, flip: np.ndarray, *,
    threads: int | None = None,
):
    """:func:`uint8_gemm_threshold` for inputs of ``m`` rows: a callable ``u -> bits``. On the
    table tiles the padded bounds, index planes and task split are made once (at batch 1 they
    took about a third of the 784 x 4096 layer's call)."""
    if _first_layer_kernel(m, None) != "tables":
        return lambda u: uint8_gemm_threshold(u, wts, thresh, flip, threads=threads)
    n = wts.w.shape[1]
    idx = _table_planes(wts)
    bounds = _padded_bounds(*_bounds(thresh, flip, n), BLOCK_COLS * idx.shape[0])
    task_rows = _table_task_rows(m, threads)

    def run(u: np.ndarray) -> np.ndarray:
        _check_rows(u, wts)
        with _with_threads(threads):
            return _table_call(u, idx, n, task_rows, bounds)

    return run


@njit(parallel=True, cache=True)
def _add_row_nb(y, c):  # pragma: no cover - compiled
    for i in prange(y.shape[0]):
        row = y[i]
        for j in range(row.shape[0]):
            row[j] += c[j]
