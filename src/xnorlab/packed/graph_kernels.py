"""numba fast path of the format-2 (graph) operations (NumPy reference:
:mod:`.graph_reference`). Sign packing, the band threshold, the residual and the token mean
are exact; LayerNorm and attention are torch's own ops, the ones the torch ViT runs, so they
round as the model does (its signs, and so every binary layer's input, are then torch's) and
agree with the reference up to float rounding."""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .kernels import _with_threads, popcount64

__all__ = ["attention", "band_pack", "layer_norm", "mean_tokens", "residual", "sign_pack",
           "xnor_affine", "xnor_band"]

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
            out[i, j] = np.float32(np.int32(k - 2 * acc[j])) * scale[j] + bias[j]


@njit(cache=True)
def _xnor_band_rows(a, wt, k, t, low, out, lo, hi):  # pragma: no cover - compiled
    n = wt.shape[1]
    acc = np.empty(n, np.int64)
    full = n >> 6
    for i in range(lo, hi):
        _mismatch_counts(a, wt, i, acc)
        for w in range(out.shape[1]):
            base = 64 * w
            word = np.uint64(0)
            if w < full:  # a fixed 64-bit loop, which LLVM vectorises (a variable one: 2x time)
                for b in range(64):
                    y = k - 2 * acc[base + b]
                    word |= np.uint64((y >= t[base + b]) | (y <= low[base + b])) << np.uint64(b)
            else:
                for b in range(n - base):
                    y = k - 2 * acc[base + b]
                    word |= np.uint64((y >= t[base + b]) | (y <= low[base + b])) << np.uint64(b)
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
    """LayerNorm over the last axis of float32 (M, D) rows: torch's ``F.layer_norm``, the
    torch ViT's own op. A numba loop (its own sum order) gave other float32 bits in half the
    outputs (an input sign of a binary layer differed at 6 to 48 of 61 million on the MNIST
    test set) and took 1.3x this time: its 8-lane row sums are not vectorised by numba."""
    import torch
    import torch.nn.functional as F

    x = np.ascontiguousarray(x, dtype=F32)
    return F.layer_norm(torch.from_numpy(x), (x.shape[1],), torch.from_numpy(weight),
                        torch.from_numpy(bias), float(eps)).numpy()


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
