"""NumPy reference of the format-2 (graph) operations that have a numba fast path in
:mod:`.graph_kernels`: sign packing, the band threshold, LayerNorm, the residual, the token
mean and attention. Arithmetic as in ``docs/packed_format.md`` (*Format 2 arithmetic*)."""

from __future__ import annotations

import math

import numpy as np

from .bits import pack_bits

__all__ = ["attention", "band_pack", "layer_norm", "mean_tokens", "residual", "sign_pack",
           "xnor_affine", "xnor_band"]

F32 = np.float32


def sign_pack(x: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Packed bits ``x >= 0`` of float32 rows (M, K): uint64 (M, n_words(K))."""
    return pack_bits(np.asarray(x) >= 0)


def band_pack(y: np.ndarray, thresh: np.ndarray, thresh_low: np.ndarray, *,
              threads: int | None = None) -> np.ndarray:
    """Packed bits ``y >= thresh or y <= thresh_low`` per column of int32 (M, N) ``y``."""
    return pack_bits((y >= thresh) | (y <= thresh_low))


def xnor_affine(a: np.ndarray, wt: np.ndarray, k: int, scale: np.ndarray, bias: np.ndarray, *,
                threads: int | None = None) -> np.ndarray:
    """``float32(k - 2 popcount(a[i] ^ w[j])) * scale[j] + bias[j]``: float32 (M, N), from
    packed rows ``a`` (M, W) and the weights word-major ``wt`` (W, N)."""
    from .reference import xnor_gemm

    z = xnor_gemm(np.ascontiguousarray(a), np.ascontiguousarray(wt.T), k).astype(F32) * scale
    z += bias
    return z


def xnor_band(a: np.ndarray, wt: np.ndarray, k: int, thresh: np.ndarray,
              thresh_low: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Packed bits ``y >= thresh or y <= thresh_low`` of ``y = k - 2 popcount(a[i] ^ w[j])``
    (weights word-major ``wt`` (W, N)): uint64 (M, n_words(N))."""
    from .reference import xnor_gemm

    return band_pack(xnor_gemm(np.ascontiguousarray(a), np.ascontiguousarray(wt.T), k),
                     thresh, thresh_low)


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float, *,
               threads: int | None = None) -> np.ndarray:
    """LayerNorm over the last axis of float32 (M, D) rows."""
    mu = x.mean(axis=-1, keepdims=True, dtype=F32)
    d = x - mu
    var = (d * d).mean(axis=-1, keepdims=True, dtype=F32)
    rstd = F32(1.0) / np.sqrt(var + F32(eps))
    return d * rstd * weight + bias


def residual(x: np.ndarray, y: np.ndarray, gamma: np.ndarray, *,
             threads: int | None = None) -> np.ndarray:
    """``x + gamma * y`` over the last axis of float32 (M, D) rows (product, then sum, each
    rounded to float32)."""
    return x + gamma * y


def mean_tokens(x: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """Mean over the tokens of float32 (N, T, D): (N, D) (float32 sum / T)."""
    return x.mean(axis=1, dtype=F32)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float32 ``a @ b`` (batched) on torch's CPU GEMM where torch is installed: NumPy's
    OpenBLAS starts its own threads and was 40x slower than torch on a loaded 2-core machine
    (see also :func:`.real_layers._sgemm`)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a project dependency
        return a @ b
    ta = torch.from_numpy(np.ascontiguousarray(a))
    return ta.matmul(torch.from_numpy(np.ascontiguousarray(b))).numpy()


def attention(x: np.ndarray, heads: int, *, threads: int | None = None) -> np.ndarray:
    """Softmax attention of float32 (N, T, 3 D) packed q, k, v: float32 (N, T, D). On torch
    where installed (batched GEMMs, a fused softmax: NumPy's reductions along a 16-wide last
    axis were a fifth of the ViT's time), else NumPy; the same formula either way."""
    n, t, d3 = x.shape
    d = d3 // 3
    qkv = x.reshape(n, t, 3, heads, d // heads).transpose(2, 0, 3, 1, 4)
    scale = F32(1.0 / math.sqrt(d // heads))
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a project dependency
        s = (qkv[0] @ qkv[1].transpose(0, 1, 3, 2)) * scale
        s -= s.max(axis=-1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(axis=-1, keepdims=True, dtype=F32)
        return np.ascontiguousarray((s @ qkv[2]).transpose(0, 2, 1, 3)).reshape(n, t, d)
    q, k, v = (torch.from_numpy(np.ascontiguousarray(p)) for p in qkv)
    p = torch.softmax(q.matmul(k.transpose(2, 3)) * float(scale), dim=-1)
    return np.ascontiguousarray(p.matmul(v).transpose(1, 2).numpy()).reshape(n, t, d)
