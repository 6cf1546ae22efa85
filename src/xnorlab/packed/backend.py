"""The interface every kernel backend provides (:mod:`.reference` NumPy, :mod:`.kernels` numba).

:func:`~.engine.get_backend` binds one module's functions into an object of this shape; the
layers call only these operations. ``threads`` is ignored by the single-threaded reference.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .reference import ConvTaps, Int8Weights

__all__ = ["OPS", "Backend"]

Pair = tuple[int, int]
Quad = tuple[int, int, int, int]


class Backend(Protocol):
    """Packed-engine kernels: int32 pre-activations, or packed bits with a fused threshold."""

    name: str

    def xnor_gemm(self, a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
        """``k - 2 popcount(a[i] ^ b[j])``: int32 (M, N)."""
        ...

    def xnor_gemm_threshold(
        self, a: np.ndarray, b: np.ndarray, k: int, thresh: np.ndarray, flip: np.ndarray
    ) -> np.ndarray:
        """Thresholded :meth:`xnor_gemm` as packed bits (M, n_words(N))."""
        ...

    def bitplanes(self, u: np.ndarray) -> np.ndarray:
        """uint8 (M, K) -> the first layer's input operand (bit planes (M, 8, n_words(K)))."""
        ...

    def bitplane_gemm(self, planes: np.ndarray, b: np.ndarray) -> np.ndarray:
        """First dense layer: exact ``sum_k w[j, k] u[m, k]``, int32 (M, N)."""
        ...

    def bitplane_gemm_threshold(
        self, planes: np.ndarray, b: np.ndarray, thresh: np.ndarray, flip: np.ndarray
    ) -> np.ndarray:
        """Thresholded :meth:`bitplane_gemm` as packed bits."""
        ...

    def uint8_gemm(self, u: np.ndarray, wts: Int8Weights) -> np.ndarray:
        """First dense layer straight from uint8 rows (M, K): int32 (M, N)."""
        ...

    def uint8_gemm_threshold(
        self, u: np.ndarray, wts: Int8Weights, thresh: np.ndarray, flip: np.ndarray
    ) -> np.ndarray:
        """Thresholded :meth:`uint8_gemm` as packed bits."""
        ...

    def threshold_pack(self, y: np.ndarray, thresh: np.ndarray, flip: np.ndarray) -> np.ndarray:
        """Packed bits of ``y >= thresh`` (``y <= thresh`` where ``flip``) per column."""
        ...

    def binary_conv2d(
        self,
        x: np.ndarray,
        taps: ConvTaps,
        stride: Pair,
        padding: Quad,
        thresh: np.ndarray | None = None,
        flip: np.ndarray | None = None,
        pool: Pair = (1, 1),
    ) -> np.ndarray:
        """Conv of packed NHWC bits: int32 (N, Ho, Wo, out) or OR-pooled packed bits."""
        ...

    def uint8_conv2d(
        self,
        u: np.ndarray,
        taps: ConvTaps,
        stride: Pair,
        padding: Quad,
        thresh: np.ndarray | None = None,
        flip: np.ndarray | None = None,
        pool: Pair = (1, 1),
    ) -> np.ndarray:
        """Conv of a uint8 NCHW image (zero padding); outputs as :meth:`binary_conv2d`."""
        ...

    def threshold_hamming(self, u: np.ndarray, threshold: int, w: np.ndarray) -> np.ndarray:
        """Hamming distances of the bits ``u >= threshold`` of uint8 rows (M, K) to packed
        rows ``w`` (C, n_words(K)): int32 (M, C) (the K-means layer)."""
        ...

    # -- format 2 (graph) operations -------------------------------------------------------

    def sign_pack(self, x: np.ndarray) -> np.ndarray:
        """Packed bits ``x >= 0`` of float32 rows (M, K)."""
        ...

    def xnor_affine(
        self, a: np.ndarray, wt: np.ndarray, k: int, scale: np.ndarray, bias: np.ndarray
    ) -> np.ndarray:
        """``float32(k - 2 popcount(a[i] ^ w[j])) * scale[j] + bias[j]`` (weights ``wt``
        word-major, (W, N)): float32 (M, N)."""
        ...

    def xnor_band(
        self, a: np.ndarray, wt: np.ndarray, k: int, thresh: np.ndarray, thresh_low: np.ndarray
    ) -> np.ndarray:
        """Packed bits ``y >= thresh or y <= thresh_low`` of the XNOR GEMM (``wt`` word-major)."""
        ...

    def band_pack(self, y: np.ndarray, thresh: np.ndarray, thresh_low: np.ndarray) -> np.ndarray:
        """Packed bits ``y >= thresh or y <= thresh_low`` per column of int32 (M, N) ``y``."""
        ...

    def layer_norm(
        self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float
    ) -> np.ndarray:
        """LayerNorm over the last axis of float32 (M, D) rows."""
        ...

    def residual(self, x: np.ndarray, y: np.ndarray, gamma: np.ndarray) -> np.ndarray:
        """``x + gamma * y`` over the last axis of float32 (M, D) rows."""
        ...

    def mean_tokens(self, x: np.ndarray) -> np.ndarray:
        """Mean over the tokens of float32 (N, T, D): (N, D)."""
        ...

    def attention(self, x: np.ndarray, heads: int) -> np.ndarray:
        """Softmax attention of float32 (N, T, 3 D) packed q, k, v: (N, T, D)."""
        ...


#: The operation names of :class:`Backend` (what a backend module must define).
OPS: tuple[str, ...] = tuple(
    n for n in Backend.__dict__ if not n.startswith("_") and callable(Backend.__dict__[n])
)
