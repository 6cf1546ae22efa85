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
* First dense layer from uint8 rows (:func:`uint8_gemm`): an int8 GEMM with int32 accumulation
  of ``u - 128`` (``u ^ 0x80`` as int8) by the +-1 weights, corrected exactly by ``128 colsum(w)``
  (folded into the thresholds when fused). It runs on ``torch._int_mm`` (oneDNN: AVX-512 VNNI
  ``vpdpbusd`` where the CPU has it, AVX2 ``vpmaddubsw`` otherwise), ~6x the bit-plane kernel on
  784-wide rows; without torch a numba loop computes the same integers.
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

from .reference import TAPS_PER_PASS, ConvTaps, Int8Weights, conv_geometry

__all__ = [
    "binary_conv2d",
    "bitplane_gemm",
    "bitplane_gemm_threshold",
    "bitplanes",
    "popcount64",
    "threshold_pack",
    "uint8_conv2d",
    "uint8_gemm",
    "uint8_gemm_threshold",
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
def _xnor_gemm_threshold_nb(A, B, k, lo, hi, out):  # pragma: no cover - compiled
    # bit j of row i = lo[j] <= y[i, j] <= hi[j] with y = k - 2 * popcount; out zeroed.
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
def _fill_u8_sources(u, n0, geom, src):  # pragma: no cover - compiled
    # src[c]: zero-padded int32 plane of channel c of samples n0 .., laid out as for bits;
    # src[C + c] = -src[c], so a +-1 weight selects a plane instead of multiplying; the last
    # plane stays zero
    _, ch, h, w = u.shape
    pt, pl, hp, wp = geom.pt, geom.pl, geom.hp, geom.wp
    nb = min(geom.block, u.shape[0] - n0)
    src[:] = 0
    for c in range(ch):
        for b in range(nb):
            for y in range(h):
                start = b * hp * wp + (y + pt) * wp + pl
                row = src[c, start:]
                neg = src[ch + c, start:]
                for xx in range(w):
                    row[xx] = u[n0 + b, c, y, xx]
                    neg[xx] = -row[xx]


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


@njit(cache=True, inline="always")  # a call returning array views would halve the speed
def _int_runs(src, plane, off, wt, j, t, L):  # pragma: no cover - compiled
    # source runs of taps t .. t + 2: the negated plane where the weight is -1
    nc = (src.shape[0] - 1) // 2
    r0 = plane[t] + nc * (wt[t, j] < 0)
    r1 = plane[t + 1] + nc * (wt[t + 1, j] < 0)
    r2 = plane[t + 2] + nc * (wt[t + 2, j] < 0)
    return (
        src[r0, off[t] : off[t] + L],
        src[r1, off[t + 1] : off[t + 1] + L],
        src[r2, off[t + 2] : off[t + 2] + L],
    )


@njit(cache=True)
def _int_tap_sweep(src, plane, off, wt, j, stop, acc):  # pragma: no cover - compiled
    # acc[q] = sum over taps t < stop of wt[t, j] * src[plane[t], off[t] + q] (+-1 weights)
    L = acc.shape[0]
    for t in range(0, stop, 3):
        s0, s1, s2 = _int_runs(src, plane, off, wt, j, t, L)
        if t == 0:
            for q in range(L):
                acc[q] = s0[q] + s1[q] + s2[q]
        else:
            for q in range(L):
                acc[q] += s0[q] + s1[q] + s2[q]


@njit(cache=True)
def _or_threshold(acc, t, ge, o, bit):  # pragma: no cover - compiled
    # o[q] |= (acc[q] >= t if ge else acc[q] <= t) << bit. Kept apart from the int32 sweep:
    # fused, the mixed int32 / uint64 lanes halve the sweep's vector width
    b = np.uint64(bit)
    if ge:
        for q in range(acc.shape[0]):
            o[q] |= np.uint64(acc[q] >= t) << b
    else:
        for q in range(acc.shape[0]):
            o[q] |= np.uint64(acc[q] <= t) << b


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
def _scatter_bits(ob, n0, geom, out):  # pragma: no cover - compiled
    # out[n, qy, qx] = OR of ob[:, sweep position] over the (ph, pw) pool window of conv
    # outputs (qy ph + dy, qx pw + dx): OR-pool with kernel = stride; (1, 1) = a plain copy
    _, hq, wq, wco = out.shape
    hp, wp, sh, sw, ph, pw = geom.hp, geom.wp, geom.sh, geom.sw, geom.ph, geom.pw
    for b in range(min(geom.block, out.shape[0] - n0)):
        for qy in range(hq):
            for qx in range(wq):
                q0 = b * hp * wp + qy * ph * sh * wp + qx * pw * sw
                for k in range(wco):
                    o = ob[k]
                    v = np.uint64(0)
                    for dy in range(ph):
                        for dx in range(pw):
                            v |= o[q0 + dy * sh * wp + dx * sw]
                    out[n0 + b, qy, qx, k] = v


@njit(parallel=True, cache=True)
def _binary_conv_nb(
    x, plane, ky, kx, wt, pad, groups, geom, thresh, flip, bits, y
):  # pragma: no cover - compiled
    # geom: see _conv_args. Each task sweeps a block of B samples; fused threshold into bits
    # if thresh.size, else int outputs y = K - 2 popcount
    c, hp, wp, L, k, B = geom.channels, geom.hp, geom.wp, geom.sweep, geom.fan_in, geom.block
    fuse = thresh.shape[0] > 0
    T, co = wt.shape
    off = ky * wp + kx
    n = x.shape[0]
    for blk in prange((n + B - 1) // B):
        n0 = blk * B
        nb = min(B, n - n0)
        span = (nb - 1) * hp * wp + L  # sweep positions of this block
        size = max(nb * hp * wp, span + off.max())  # the planes, or the furthest tap read
        src = np.empty((pad.shape[0] + groups.shape[0] + 1, size), np.uint64)
        _fill_bit_sources(x, n0, pad, groups, c, geom, src)
        acc = np.empty(span, np.int64)
        ob = np.zeros(((co + 63) // 64 if fuse else 0, span), np.uint64)
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
            _scatter_bits(ob, n0, geom, bits)


@njit(parallel=True, cache=True)
def _uint8_conv_nb(u, plane, ky, kx, wt, geom, thresh, flip, bits, y):  # pragma: no cover
    # as _binary_conv_nb on a uint8 NCHW image: exact int32 sums (|y| <= 255 K < 2^31), then
    # the threshold on y (the int32 sentinels need no special case)
    hp, wp, L, B = geom.hp, geom.wp, geom.sweep, geom.block
    fuse = thresh.shape[0] > 0
    T, co = wt.shape
    off = ky * wp + kx
    n = u.shape[0]
    for blk in prange((n + B - 1) // B):
        n0 = blk * B
        nb = min(B, n - n0)
        span = (nb - 1) * hp * wp + L
        # int16 lanes (twice the int32 vector width) when |y| <= 255 K fits: thresh's dtype
        src = np.empty((2 * u.shape[1] + 1, max(nb * hp * wp, span + off.max())), thresh.dtype)
        _fill_u8_sources(u, n0, geom, src)
        acc = np.empty(span, thresh.dtype)
        ob = np.zeros(((co + 63) // 64 if fuse else 0, span), np.uint64)
        for j in range(co):
            _int_tap_sweep(src, plane, off, wt, j, T, acc)
            if fuse:
                _or_threshold(acc, thresh[j], not flip[j], ob[j >> 6], j & 63)
            else:
                _store_outputs(acc, 1, 0, n0, j, geom, y)
        if fuse:
            _scatter_bits(ob, n0, geom, bits)


# -- public wrappers -------------------------------------------------------------------------


def _clip_to(t: np.ndarray, dtype) -> np.ndarray:
    """Thresholds as ``dtype``, clipped: with every ``|y| < max(dtype)`` a clipped threshold
    decides ``y >= t`` and ``y <= t`` as the original does (sentinels included)."""
    info = np.iinfo(dtype)
    return np.clip(t, info.min, info.max).astype(dtype)


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


@contextmanager
def _with_threads(threads: int | None):
    """numba's thread count set to ``threads`` for the block (None: unchanged)."""
    if threads is None:
        yield
        return
    old = numba.get_num_threads()
    numba.set_num_threads(int(threads))
    try:
        yield
    finally:
        numba.set_num_threads(old)


def _bounds(
    thresh: np.ndarray, flip: np.ndarray, n: int, offset: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` int32 with ``bit = lo <= v <= hi`` equivalent to ``y >= t`` (``y <= t``
    where ``flip``) for ``v = y - offset``. Clipping to int32 keeps the meaning because every
    pre-activation satisfies ``|v| < 2^31 - 1`` (``|y| <= 255 K``)."""
    t = np.asarray(thresh, dtype=np.int64).reshape(-1)
    f = np.asarray(flip, dtype=np.bool_).reshape(-1)
    if t.shape != (n,) or f.shape != (n,):
        raise ValueError(f"thresh and flip need shape ({n},), got {t.shape} and {f.shape}")
    i32 = np.iinfo(np.int32)
    lo = np.where(f, i32.min, t)
    hi = np.where(f, t, i32.max)
    if offset is not None:
        off = np.asarray(offset, dtype=np.int64)
        lo = np.where(f, lo, lo - off)
        hi = np.where(f, hi - off, hi)
    return np.clip(lo, i32.min, i32.max).astype(np.int32), np.clip(hi, i32.min, i32.max).astype(
        np.int32
    )


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
    lo, hi = _bounds(thresh, flip, n)
    out = np.zeros((a.shape[0], (n + 63) // 64), dtype=np.uint64)
    with _with_threads(threads):
        _xnor_gemm_threshold_nb(a, b, np.int64(k), lo, hi, out)
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
    block: int  # B: samples per parallel task


def _conv_args(n, hw, taps, stride, padding, pool, thresh, flip, threads):
    """Geometry, threshold arrays (empty: int outputs) and output shape of a conv call.

    ``geom`` is a :class:`ConvGeom`; its ``block`` samples per task have padded planes that,
    laid end to end, make one sweep of about :data:`SWEEP_POSITIONS` positions.
    """
    hp, wp, ho, wo = conv_geometry(hw, taps.kernel, stride, padding)
    ph, pw = pool
    if min(ph, pw) < 1:
        raise ValueError(f"pool must be >= (1, 1), got {pool}")
    if taps.weight.shape[0] % TAPS_PER_PASS or TAPS_PER_PASS != 3:  # the passes are unrolled
        raise ValueError("taps must come in whole passes of 3 (build them with conv_taps)")
    sweep = ((ho - 1) * stride[0] + 1) * wp
    per_thread = -(-n // (threads or numba.get_num_threads()))
    block = max(1, min(SWEEP_POSITIONS // (hp * wp), per_thread))
    pt, _, pl, _ = padding
    geom = ConvGeom(*(int(v) for v in (taps.channels, pt, pl, hp, wp, sweep, *stride, ph, pw,
                                       taps.fan_in, block)))
    co = taps.weight.shape[1]
    if thresh is None:
        return geom, np.zeros(0, np.int32), np.zeros(0, np.bool_), (ho, wo, co)
    t = np.ascontiguousarray(thresh, dtype=np.int32)
    f = np.ascontiguousarray(flip, dtype=np.bool_)
    if t.shape != (co,) or f.shape != (co,):
        raise ValueError(f"thresh and flip need shape ({co},), got {t.shape} and {f.shape}")
    return geom, t, f, (ho // ph, wo // pw, (co + 63) // 64)


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
    n = x.shape[0]
    geom, t, f, shape = _conv_args(n, x.shape[1:3], taps, stride, padding, pool, thresh, flip,
                                   threads)
    bits, y = _conv_outputs(n, t, shape)
    with _with_threads(threads):
        _binary_conv_nb(np.ascontiguousarray(x), taps.plane, taps.ky, taps.kx, taps.weight,
                        taps.pad, taps.groups, geom, t, f, bits, y)
    return bits if t.shape[0] else y


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
    n = u.shape[0]
    geom, t, f, shape = _conv_args(n, u.shape[2:4], taps, stride, padding, pool, thresh, flip,
                                   threads)
    lanes = np.int16 if 255 * taps.fan_in < np.iinfo(np.int16).max else np.int32
    bits, y = _conv_outputs(n, t, shape)
    with _with_threads(threads):
        _uint8_conv_nb(np.ascontiguousarray(u), taps.plane, taps.ky, taps.kx,
                       taps.weight, geom, _clip_to(t, lanes), f, bits, y)
    return bits if t.shape[0] else y


# -- first dense layer from uint8 rows: int8 GEMM, int32 accumulation ----------------------------


#: Output columns per task of the numba int8 kernel (its int32 accumulators stay in L1).
INT8_COLS = 512

#: Below this many rows the first layer runs on the numba kernel: ``torch._int_mm`` repacks
#: the whole weight matrix on every call, which dominates (and varies 10x) at batch 1.
INT8_TORCH_MIN_ROWS = 32


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


def _shifted(u: np.ndarray, wts: Int8Weights) -> np.ndarray:
    if not isinstance(u, np.ndarray) or u.dtype != np.uint8 or u.ndim != 2:
        raise ValueError(f"u must be 2-D uint8 rows, got {getattr(u, 'dtype', type(u))}")
    if u.shape[1] != wts.w.shape[0] or wts.w.dtype != np.int8:
        raise ValueError(f"u has {u.shape[1]} columns, the int8 weights {wts.w.shape}")
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


def uint8_gemm(
    u: np.ndarray, wts: Int8Weights, *, threads: int | None = None, use_torch: bool = True
) -> np.ndarray:
    """First layer: ``y[m, n] = sum_k u[m, k] w[k, n]`` (int32) as ``(u - 128) w + 128 colsum``."""
    a8 = _shifted(u, wts)
    with _with_threads(threads), _torch_threads(threads):
        y = int8_matmul(a8, wts.w, use_torch=use_torch)
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
) -> np.ndarray:
    """First layer fused with the threshold: packed bits (M, n_words(N)); the ``128 colsum``
    correction is folded into the bounds (``lo <= y0 + c <= hi <=> lo - c <= y0 <= hi - c``)."""
    a8 = _shifted(u, wts)
    n = wts.w.shape[1]
    lo, hi = _bounds(thresh, flip, n, offset=128 * wts.colsum.astype(np.int64))
    out = np.empty((u.shape[0], (n + 63) // 64), dtype=np.uint64)
    with _with_threads(threads), _torch_threads(threads):
        y0 = int8_matmul(a8, wts.w, use_torch=use_torch)
        _threshold_pack_nb(y0, lo, hi, out)
    return out


@njit(parallel=True, cache=True)
def _add_row_nb(y, c):  # pragma: no cover - compiled
    for i in prange(y.shape[0]):
        row = y[i]
        for j in range(row.shape[0]):
            row[j] += c[j]
