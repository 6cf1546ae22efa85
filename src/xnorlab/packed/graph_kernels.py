"""numba fast path of the format-2 (graph) operations (NumPy reference:
:mod:`.graph_reference`). Sign packing and the band threshold are exact; LayerNorm is a float32
loop (``fastmath`` off, so no fused multiply-add) whose sums run in another order than the
reference's, so its outputs agree with it up to float rounding; attention is torch's fused
kernel (as the torch ViT's), also equal to the reference up to rounding."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .kernels import _with_threads, popcount64

__all__ = ["attention", "band_pack", "layer_norm", "layer_norm_sign", "mean_tokens", "residual",
           "sign_pack", "xnor_affine", "xnor_band"]

F32 = np.float32


@njit(parallel=True, cache=True)
def _sign_pack_nb(x, out):  # pragma: no cover - compiled
    m, k = x.shape
    for i in prange(m):
        for w in range(out.shape[1]):
            base = w * 64
            word = np.uint64(0)
            for b in range(min(64, k - base)):
                word |= np.uint64(x[i, base + b] >= 0) << np.uint64(b)
            out[i, w] = word


@njit(parallel=True, cache=True)
def _band_pack_nb(y, t, low, out):  # pragma: no cover - compiled
    m, n = y.shape
    for i in prange(m):
        for w in range(out.shape[1]):
            base = w * 64
            word = np.uint64(0)
            for b in range(min(64, n - base)):
                v = y[i, base + b]
                word |= np.uint64((v >= t[base + b]) | (v <= low[base + b])) << np.uint64(b)
            out[i, w] = word


#: Rows per LayerNorm task.
LN_ROWS = 64


@njit(inline="always", cache=True)
def _lane_sum(v):  # pragma: no cover - compiled
    # 8 interleaved partial sums (lane q adds v[q], v[q + 8], ... in order), then combined
    # in lane order; this order is part of the kernel's arithmetic (the export check ran with
    # it). The lanes are 8 locals, not an array: array lanes went through memory on every add
    # (numba does not run LLVM's SLP vectoriser to keep them in one register), 1.4x the time
    d = v.shape[0]
    e = d - d % 8
    z = np.float32(0.0)
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = z
    for j in range(0, e, 8):
        s0 += v[j]
        s1 += v[j + 1]
        s2 += v[j + 2]
        s3 += v[j + 3]
        s4 += v[j + 4]
        s5 += v[j + 5]
        s6 += v[j + 6]
        s7 += v[j + 7]
    r = d - e  # the tail: v[e + q] goes to lane q
    if r > 0:
        s0 += v[e]
    if r > 1:
        s1 += v[e + 1]
    if r > 2:
        s2 += v[e + 2]
    if r > 3:
        s3 += v[e + 3]
    if r > 4:
        s4 += v[e + 4]
    if r > 5:
        s5 += v[e + 5]
    if r > 6:
        s6 += v[e + 6]
    return z + s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7


@njit(inline="always", cache=True)
def _row_stats(x, i, nd, eps, c, sq):  # pragma: no cover - compiled
    # c = x[i] - mu and 1 / sqrt(var + eps) of row i (float32, no fused multiply-add)
    mu = _lane_sum(x[i]) / nd
    for j in range(c.shape[0]):
        c[j] = x[i, j] - mu
        sq[j] = c[j] * c[j]
    return np.float32(1.0) / np.sqrt(_lane_sum(sq) / nd + eps)


@njit(cache=True)
def _layer_norm_rows(x, weight, bias, eps, out, lo, hi):  # pragma: no cover - compiled
    # rows lo..hi in a plain (not parallel) function: the same loop inside the prange body
    # ran at half this speed (numba's parfor lowering kept it from being vectorised)
    d = x.shape[1]
    nd = np.float32(d)
    c = np.empty(d, np.float32)
    sq = np.empty(d, np.float32)
    for i in range(lo, hi):
        rstd = _row_stats(x, i, nd, eps, c, sq)
        for j in range(d):
            out[i, j] = c[j] * rstd * weight[j] + bias[j]


@njit(cache=True)
def _layer_norm_sign_rows(x, weight, bias, eps, out, lo, hi):  # pragma: no cover - compiled
    # as _layer_norm_rows, but only the packed signs of the outputs (what a following
    # real-input binary linear reads): bit = (c * rstd * w + b >= 0), the same float32 value
    d = x.shape[1]
    nd = np.float32(d)
    c = np.empty(d, np.float32)
    sq = np.empty(d, np.float32)
    for i in range(lo, hi):
        rstd = _row_stats(x, i, nd, eps, c, sq)
        for j in range(d):  # its own loop (vectorised), then the packing
            c[j] = c[j] * rstd * weight[j] + bias[j]
        for w in range(out.shape[1]):
            word = np.uint64(0)
            for b in range(min(64, d - 64 * w)):
                word |= np.uint64(c[64 * w + b] >= 0) << np.uint64(b)
            out[i, w] = word


@njit(parallel=True, cache=True)
def _layer_norm_nb(x, weight, bias, eps, out):  # pragma: no cover - compiled
    m = x.shape[0]
    for blk in prange((m + LN_ROWS - 1) // LN_ROWS):
        _layer_norm_rows(x, weight, bias, eps, out, blk * LN_ROWS, min(m, (blk + 1) * LN_ROWS))


@njit(parallel=True, cache=True)
def _layer_norm_sign_nb(x, weight, bias, eps, out):  # pragma: no cover - compiled
    m = x.shape[0]
    for blk in prange((m + LN_ROWS - 1) // LN_ROWS):
        _layer_norm_sign_rows(x, weight, bias, eps, out, blk * LN_ROWS,
                              min(m, (blk + 1) * LN_ROWS))


@njit(parallel=True, cache=True)
def _residual_nb(x, y, gamma, out):  # pragma: no cover - compiled
    m, d = x.shape
    for i in prange(m):
        for j in range(d):
            out[i, j] = x[i, j] + gamma[j] * y[i, j]


#: Rows per task of the XNOR kernels.
XNOR_ROWS = 64


@njit(parallel=True, cache=True)
def _mean_tokens_nb(x, out):  # pragma: no cover - compiled
    n, t, d = x.shape
    for i in prange(n):
        for j in range(d):
            out[i, j] = x[i, 0, j]
        for k in range(1, t):
            for j in range(d):
                out[i, j] += x[i, k, j]
        for j in range(d):
            out[i, j] /= np.float32(t)


@njit(inline="always", cache=True)
def _mismatch_counts(a, wt, i, acc):  # pragma: no cover - compiled
    # acc[j] = popcount(a_i XOR w_j) for every output column j of row i; the inner loops run
    # over columns (weights stored word-major, (W, N)), so they vectorise (vpopcntq on AVX-512
    # VPOPCNTDQ) even for one word per row. The first word assigns: no zeroing pass
    n = wt.shape[1]
    a0 = a[i, 0]
    for j in range(n):
        acc[j] = popcount64(a0 ^ wt[0, j])
    for q in range(1, a.shape[1]):
        aq = a[i, q]
        for j in range(n):
            acc[j] += popcount64(aq ^ wt[q, j])


@njit(cache=True)
def _xnor_affine_rows(a, wt, k, scale, bias, out, lo, hi):  # pragma: no cover - compiled
    # rows lo..hi; the affine keeps the two roundings (fastmath off: no fused multiply-add)
    n = wt.shape[1]
    acc = np.empty(n, np.int64)  # once per task, not per row
    for i in range(lo, hi):
        _mismatch_counts(a, wt, i, acc)
        for j in range(n):
            out[i, j] = np.float32(k - 2 * acc[j]) * scale[j] + bias[j]


@njit(cache=True)
def _xnor_band_rows(a, wt, k, t, low, out, lo, hi):  # pragma: no cover - compiled
    n = wt.shape[1]
    acc = np.empty(n, np.int64)
    for i in range(lo, hi):
        _mismatch_counts(a, wt, i, acc)
        for w in range(out.shape[1]):
            word = np.uint64(0)
            for b in range(min(64, n - 64 * w)):
                j = 64 * w + b
                y = k - 2 * acc[j]
                word |= np.uint64((y >= t[j]) | (y <= low[j])) << np.uint64(b)
            out[i, w] = word


# The prange loops call plain functions for blocks of rows (as the LayerNorm: loops inlined
# in a prange body were vectorised worse, 1.2x the time here)
@njit(parallel=True, cache=True)
def _xnor_affine_nb(a, wt, k, scale, bias, out):  # pragma: no cover - compiled
    m = a.shape[0]
    for blk in prange((m + XNOR_ROWS - 1) // XNOR_ROWS):
        _xnor_affine_rows(a, wt, k, scale, bias, out, blk * XNOR_ROWS,
                          min(m, (blk + 1) * XNOR_ROWS))


@njit(parallel=True, cache=True)
def _xnor_band_nb(a, wt, k, t, low, out):  # pragma: no cover - compiled
    m = a.shape[0]
    for blk in prange((m + XNOR_ROWS - 1) // XNOR_ROWS):
        _xnor_band_rows(a, wt, k, t, low, out, blk * XNOR_ROWS, min(m, (blk + 1) * XNOR_ROWS))


def xnor_band(a: np.ndarray, wt: np.ndarray, k: int, thresh: np.ndarray,
              thresh_low: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Packed bits ``y >= thresh or y <= thresh_low`` of ``y = k - 2 popcount(a[i] ^ w[j])``
    (weights word-major ``wt`` (W, N)): uint64 (M, n_words(N))."""
    a = np.ascontiguousarray(a, dtype=np.uint64)
    out = np.empty((a.shape[0], (wt.shape[1] + 63) // 64), np.uint64)
    with _with_threads(threads):
        _xnor_band_nb(a, wt, np.int64(k), thresh, thresh_low, out)
    return out


def sign_pack(x: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Packed bits ``x >= 0`` of float32 rows (M, K): uint64 (M, n_words(K))."""
    x = np.ascontiguousarray(x, dtype=F32)
    out = np.empty((x.shape[0], (x.shape[1] + 63) // 64), np.uint64)
    with _with_threads(threads):
        _sign_pack_nb(x, out)
    return out


def band_pack(y: np.ndarray, thresh: np.ndarray, thresh_low: np.ndarray, *,
              threads: int | None = None) -> np.ndarray:
    """Packed bits ``y >= thresh or y <= thresh_low`` per column of int32 (M, N) ``y``."""
    y = np.ascontiguousarray(y, dtype=np.int32)
    out = np.empty((y.shape[0], (y.shape[1] + 63) // 64), np.uint64)
    with _with_threads(threads):
        _band_pack_nb(y, np.ascontiguousarray(thresh, dtype=np.int32),
                      np.ascontiguousarray(thresh_low, dtype=np.int32), out)
    return out


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float, *,
               threads: int | None = None) -> np.ndarray:
    """LayerNorm over the last axis of float32 (M, D) rows."""
    x = np.ascontiguousarray(x, dtype=F32)
    out = np.empty_like(x)
    with _with_threads(threads):
        _layer_norm_nb(x, weight, bias, F32(eps), out)
    return out


def layer_norm_sign(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float, *,
                    threads: int | None = None) -> np.ndarray:
    """Packed bits ``layer_norm(x) >= 0`` of float32 (M, D) rows: uint64 (M, n_words(D)),
    the same bits as :func:`sign_pack` of :func:`layer_norm`."""
    x = np.ascontiguousarray(x, dtype=F32)
    out = np.empty((x.shape[0], (x.shape[1] + 63) // 64), np.uint64)
    with _with_threads(threads):
        _layer_norm_sign_nb(x, weight, bias, F32(eps), out)
    return out


def residual(x: np.ndarray, y: np.ndarray, gamma: np.ndarray, *,
             threads: int | None = None) -> np.ndarray:
    """``x + gamma * y`` over the last axis of float32 (M, D) rows (product, then sum, each
    rounded to float32): one pass, where NumPy made two with a temporary (2.5x the time)."""
    x = np.ascontiguousarray(x, dtype=F32)
    out = np.empty_like(x)
    with _with_threads(threads):
        _residual_nb(x, np.ascontiguousarray(y, dtype=F32), gamma, out)
    return out


def mean_tokens(x: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Mean over the tokens of float32 (N, T, D): (N, D), the token sums in token order, then
    ``/ T`` (NumPy's ``mean(axis=1)`` order, so the same bits; a fifth of its time)."""
    x = np.ascontiguousarray(x, dtype=F32)
    out = np.empty((x.shape[0], x.shape[2]), F32)
    with _with_threads(threads):
        _mean_tokens_nb(x, out)
    return out


def attention(x: np.ndarray, heads: int, *, threads: int | None = None) -> np.ndarray:
    """Softmax attention of float32 (N, T, 3 D) packed q, k, v: float32 (N, T, D).

    torch's ``scaled_dot_product_attention`` on views of ``x``: the op (and the q, k, v
    strides) of the torch ViT itself, so its rounding, not the reference's (two batched
    GEMMs, a softmax: 1.4x this time, with copies of q, k, v and of the output per call).
    A numba loop was slower still: its 16-wide rows run in the vectoriser's scalar remainder."""
    import torch
    import torch.nn.functional as F

    n, t, d3 = x.shape
    d = d3 // 3
    qkv = torch.from_numpy(np.ascontiguousarray(x, dtype=F32)).view(n, t, 3, heads, d // heads)
    qkv = qkv.permute(2, 0, 3, 1, 4)
    y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
    return y.transpose(1, 2).reshape(n, t, d).numpy()


def xnor_affine(a: np.ndarray, wt: np.ndarray, k: int, scale: np.ndarray, bias: np.ndarray, *,
                threads: int | None = None) -> np.ndarray:
    """``float32(k - 2 popcount(a[i] ^ w[j])) * scale[j] + bias[j]``: float32 (M, N), from
    packed rows ``a`` (M, W) and the weights word-major ``wt`` (W, N)."""
    a = np.ascontiguousarray(a, dtype=np.uint64)
    out = np.empty((a.shape[0], wt.shape[1]), F32)
    with _with_threads(threads):
        _xnor_affine_nb(a, wt, np.int64(k), scale, bias, out)
    return out
