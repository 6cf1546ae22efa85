"""Plain NumPy reference path (``np.bitwise_count`` of ``np.bitwise_xor``), the oracle for
:mod:`.kernels`. Same signatures as the fast wrappers; chunked so temporaries stay small.

Convolutions are computed as a sum over **taps** (:class:`ConvTaps`, built by
:func:`conv_taps` from the stored weights): each sample's input is laid out as padded,
row-major *source planes* of ``Hp * Wp`` values, and tap ``t`` adds, for every position ``q``
(the top-left input pixel of an output), ``popcount(src[plane[t], q + ky[t] * Wp + kx[t]] ^
weight[t, j])`` (binary input) or ``weight[t, j] * src[...]`` (uint8 input). The sweep covers
every stride-1 position of whole padded rows (outputs falling in the padding columns or
between strides are computed and dropped), so every tap reads a contiguous run of words.
Binary images with few channels (``C <= 32``) also get *grouped* planes holding ``g``
horizontally adjacent pixels in one word (pixel ``i`` at bits ``i C ..``), so a 3x3 kernel
on 16 channels costs 3 words per output instead of 9 mostly-padding words.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .bits import n_words, pack_bits, unpack_bits, valid_mask
from .graph_reference import (
    attention,
    band_pack,
    layer_norm,
    mean_tokens,
    residual,
    sign_pack,
    xnor_affine,
    xnor_band,
)

__all__ = [
    "TAPS_PER_PASS",
    "attention",
    "band_pack",
    "layer_norm",
    "mean_tokens",
    "residual",
    "sign_pack",
    "threshold_hamming",
    "xnor_affine",
    "xnor_band",
    "ConvTaps",
    "binary_conv2d",
    "bitplane_gemm",
    "bitplane_gemm_threshold",
    "bitplanes",
    "conv_geometry",
    "Int8Weights",
    "conv_taps",
    "int8_weights",
    "or_pool",
    "threshold_bits",
    "threshold_pack",
    "uint8_conv2d",
    "uint8_gemm",
    "uint8_gemm_threshold",
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


def threshold_hamming(u: np.ndarray, threshold: int, w: np.ndarray, *,
                      threads: int | None = None) -> np.ndarray:
    """Hamming distances of the bits ``u >= threshold`` of uint8 rows (M, K) to the packed rows
    ``w`` (C, n_words(K)): int32 (M, C)."""
    from .bits import pack_bits

    return xor_popcount(pack_bits(np.asarray(u) >= threshold), w).astype(np.int32)


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


class Int8Weights(NamedTuple):
    """First dense layer's +-1 weights in the layouts of the integer kernels: int8 ``(K, N)``
    with their column sums (the correction of the ``u - 128`` shift of an int8 GEMM), and the
    packed rows transposed with their popcounts (the small-batch bit-plane kernel)."""

    w: np.ndarray  # int8 (K, N), +-1
    colsum: np.ndarray  # int32 (N,), sum_k w[k, n]
    bits_t: np.ndarray  # uint64 (n_words(K), N), the packed rows b transposed
    pcw: np.ndarray  # int64 (N,), popcount of row n of b (its +1 weights)
    plans: dict  # the fast kernels' prepared forms (oneDNN's packed weight), made on first use


def int8_weights(b: np.ndarray, k: int) -> Int8Weights:
    """:class:`Int8Weights` of packed +-1 rows ``b`` (N, n_words(k))."""
    from .bits import unpack_signs

    b = np.asarray(b)
    w = np.ascontiguousarray(unpack_signs(b, k).T)
    return Int8Weights(w, w.sum(axis=0, dtype=np.int32), np.ascontiguousarray(b.T),
                       np.bitwise_count(b).sum(axis=1, dtype=np.int64), {})


def _check_u8(u: np.ndarray, wts: Int8Weights) -> np.ndarray:
    if not isinstance(u, np.ndarray) or u.dtype != np.uint8 or u.ndim != 2:
        raise ValueError(f"u must be 2-D uint8 rows, got {getattr(u, 'dtype', type(u))}")
    if u.shape[1] != wts.w.shape[0]:
        raise ValueError(f"u has {u.shape[1]} columns, the weights K={wts.w.shape[0]}")
    return u


def uint8_gemm(u: np.ndarray, wts: Int8Weights, *, threads: int | None = None) -> np.ndarray:
    """First layer straight from uint8 rows: ``sum_k u[m, k] w[k, n]`` as int32 (M, N).

    Computed in float64, exact because ``|y| <= 255 K < 2^53`` (an oracle independent of the
    integer kernels)."""
    u = _check_u8(u, wts)
    return (u.astype(np.float64) @ wts.w.astype(np.float64)).astype(np.int32)


def uint8_gemm_threshold(
    u: np.ndarray,
    wts: Int8Weights,
    thresh: np.ndarray,
    flip: np.ndarray,
    *,
    threads: int | None = None,
) -> np.ndarray:
    """Reference of the fused first layer: :func:`threshold_pack` of :func:`uint8_gemm`."""
    return threshold_pack(uint8_gemm(u, wts), thresh, flip)


# -- convolution as a sum over taps -------------------------------------------------------


#: Taps per pass of the fast kernels; tap lists are padded to a multiple of it.
TAPS_PER_PASS = 3


class ConvTaps(NamedTuple):
    """A conv kernel as taps over source planes (see the module docstring).

    ``weight`` is uint64 (T, out) words (binary input) or int32 (T, out) +-1 (uint8 input);
    ``groups`` the pixel counts of the grouped planes, which follow the ``Wc`` word planes
    (binary input only); ``pad`` the padding pixel's words (+1: all channel bits set);
    ``pixels`` the kernel as one tap per pixel (binary input with one word per pixel, else
    (0, out)), the layout of the fast kernels' one-pixel-per-lane sweep. ``T`` is
    a multiple of :data:`TAPS_PER_PASS`: filler taps have weight 0 and read plane ``-1``, an
    all-zero plane after the others, so they add nothing.
    """

    plane: np.ndarray  # int64 (T,)
    ky: np.ndarray  # int64 (T,)
    kx: np.ndarray  # int64 (T,)
    weight: np.ndarray
    groups: np.ndarray  # int64 (G,)
    pad: np.ndarray  # uint64 (Wc,)
    channels: int
    kernel: tuple[int, int]
    pixels: np.ndarray  # uint64 (kh * kw, out): each kernel pixel's channel word (C <= 64)
    plans: dict  # the fast kernels' call geometry by input shape (see kernels._conv_plan)

    @property
    def fan_in(self) -> int:
        return self.kernel[0] * self.kernel[1] * self.channels


def _group_size(channels: int, kw: int) -> int:
    """Pixels per grouped word: several pixels share a word only if one word holds a pixel."""
    return 1 if channels > 32 else min(64 // channels, kw)


def _padded_taps(plane, ky, kx, weight, groups, pad, channels, kernel, pixels) -> ConvTaps:
    """:class:`ConvTaps` with filler taps up to a multiple of :data:`TAPS_PER_PASS`."""
    fill = -len(plane) % TAPS_PER_PASS

    def ints(v, filler):
        return np.concatenate([np.asarray(v, np.int64), np.full(fill, filler, np.int64)])

    weight = np.concatenate([weight, np.zeros((fill, weight.shape[1]), weight.dtype)])
    groups = np.asarray(groups, np.int64)
    return ConvTaps(ints(plane, -1), ints(ky, 0), ints(kx, 0), weight, groups, pad, channels,
                    kernel, pixels, {})


def conv_taps(
    weight: np.ndarray, channels: int, kernel: tuple[int, int], uint8_input: bool
) -> ConvTaps:
    """Taps of a conv from its stored weight rows (layouts in ``docs/packed_format.md``)."""
    kh, kw = kernel
    c, co = int(channels), weight.shape[0]
    if uint8_input:  # one tap per kernel pixel and channel, +-1 weights
        bits = unpack_bits(weight, kh * kw * c).reshape(co, kh * kw * c)
        ky, kx, ci = np.unravel_index(np.arange(kh * kw * c), (kh, kw, c))
        sign = (2 * bits.astype(np.int32) - 1).T
        return _padded_taps(ci, ky, kx, sign, [], np.zeros(c, np.uint64), c, (kh, kw),
                            np.zeros((0, co), np.uint64))
    wc = n_words(c)
    words = weight.reshape(co, kh, kw, wc)
    pixels = np.ascontiguousarray(words.reshape(co, -1).T) if wc == 1 else np.zeros((0, co),
                                                                                   np.uint64)
    g = _group_size(c, kw)
    if g == 1:  # one tap per kernel pixel and channel word
        ky, kx, wi = np.unravel_index(np.arange(kh * kw * wc), (kh, kw, wc))
        w = words.reshape(co, -1).T
        return _padded_taps(wi, ky, kx, w, [], valid_mask(c), c, (kh, kw), pixels)
    # one tap per group of up to g pixels of a kernel row; plane 0 holds single pixels
    bits = unpack_bits(words, c)  # (co, kh, kw, c)
    sizes = sorted({min(g, kw - x0) for x0 in range(0, kw, g)} - {1}, reverse=True)
    taps = [(y, x0, min(g, kw - x0)) for y in range(kh) for x0 in range(0, kw, g)]
    plane = [0 if n == 1 else 1 + sizes.index(n) for _, _, n in taps]
    w = np.stack([pack_bits(bits[:, y, x0 : x0 + n].reshape(co, -1))[:, 0] for y, x0, n in taps])
    ky, kx = [y for y, _, _ in taps], [x0 for _, x0, _ in taps]
    return _padded_taps(plane, ky, kx, w, sizes, valid_mask(c), c, (kh, kw), pixels)


def conv_geometry(
    hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int, int, int],
) -> tuple[int, int, int, int]:
    """``(Hp, Wp, Ho, Wo)``: padded input and output sizes."""
    pt, pb, pl, pr = padding
    hp, wp = hw[0] + pt + pb, hw[1] + pl + pr
    ho, wo = (hp - kernel[0]) // stride[0] + 1, (wp - kernel[1]) // stride[1] + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"kernel {kernel} larger than padded input {hp}x{wp}")
    return hp, wp, ho, wo


def _sources(img: np.ndarray, taps: ConvTaps) -> np.ndarray:
    """(N, planes, Hp * Wp + kw) source planes from a padded (N, Hp, Wp, Wc) image: the word
    planes, the grouped planes, an all-zero plane (read by filler taps)."""
    n, hp, wp, wc = img.shape
    size = hp * wp + taps.kernel[1]
    word = np.empty((n, wc, size), img.dtype)
    word[:, :, : hp * wp] = img.transpose(0, 3, 1, 2).reshape(n, wc, -1)
    word[:, :, hp * wp :] = taps.pad[:, None] if img.dtype == np.uint64 else 0
    grouped = np.zeros((n, len(taps.groups) + 1, size), img.dtype)  # + the zero plane
    for k, g in enumerate(taps.groups):
        for i in range(g):
            grouped[:, k, : size - i] |= word[:, 0, i:] << np.uint64(i * taps.channels)
    return np.concatenate([word, grouped], axis=1)


def _tap_sweep(src: np.ndarray, taps: ConvTaps, hp: int, wp: int, term) -> np.ndarray:
    """(N, out, (Hp - kh + 1) * Wp) sums over taps of ``term(source run, weight row)``."""
    L = (hp - taps.kernel[0] + 1) * wp
    acc = 0
    for t in range(len(taps.plane)):
        off = taps.ky[t] * wp + taps.kx[t]
        acc = acc + term(src[:, taps.plane[t], None, off : off + L], taps.weight[t][None, :, None])
    return acc


def _outputs(acc: np.ndarray, wp: int, ho: int, wo: int, stride: tuple[int, int]) -> np.ndarray:
    """(N, Ho, Wo, out) outputs picked from the stride-1 sweep (N, out, rows * Wp)."""
    n, co, _ = acc.shape
    grid = acc.reshape(n, co, -1, wp)[:, :, : (ho - 1) * stride[0] + 1 : stride[0]]
    return grid[:, :, :, : (wo - 1) * stride[1] + 1 : stride[1]].transpose(0, 2, 3, 1)


def or_pool(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> np.ndarray:
    """Max-pool of +-1 values on packed NHWC bits: bitwise OR over each window (floor mode).

    Padding is bit 0 (-1), neutral for OR (torch pads max-pool with -inf).
    """
    n, h, w, wc = x.shape
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    ho = (h + 2 * ph - kh) // sh + 1
    wo = (w + 2 * pw - kw) // sw + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"pool kernel {kernel} larger than input {h}x{w}")
    if ph or pw:
        xp = np.zeros((n, h + 2 * ph, w + 2 * pw, wc), dtype=x.dtype)
        xp[:, ph : ph + h, pw : pw + w] = x
    else:
        xp = x
    out = np.zeros((n, ho, wo, wc), dtype=x.dtype)
    for dy in range(kh):
        for dx in range(kw):
            out |= xp[:, dy : dy + (ho - 1) * sh + 1 : sh, dx : dx + (wo - 1) * sw + 1 : sw]
    return out


def _finish_conv(y, thresh, flip, pool):
    if thresh is None:
        return y.astype(np.int32)
    n, ho, wo, co = y.shape
    bits = threshold_pack(y.reshape(-1, co), thresh, flip).reshape(n, ho, wo, -1)
    return or_pool(bits, pool, pool, (0, 0))


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
    """Conv of packed NHWC bits (N, H, W, Wc), +1 padding: int32 (N, Ho, Wo, out) ``y``, or,
    with ``thresh``/``flip``, the packed output bits OR-pooled by ``pool`` (kernel = stride)."""
    n, h, w, wc = x.shape
    hp, wp, ho, wo = conv_geometry((h, w), taps.kernel, stride, padding)
    pt, _, pl, _ = padding
    img = np.empty((n, hp, wp, wc), np.uint64)
    img[...] = taps.pad
    img[:, pt : pt + h, pl : pl + w] = x
    src = _sources(img, taps)

    def term(s, wt):
        return np.bitwise_count(s ^ wt).astype(np.int64)

    acc = _tap_sweep(src, taps, hp, wp, term)
    y = taps.fan_in - 2 * _outputs(acc, wp, ho, wo, stride)
    return _finish_conv(y, thresh, flip, pool)


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
    """Conv of a uint8 NCHW image, zero padding, exact integer sums; outputs as
    :func:`binary_conv2d`."""
    n, c, h, w = u.shape
    hp, wp, ho, wo = conv_geometry((h, w), taps.kernel, stride, padding)
    pt, _, pl, _ = padding
    img = np.zeros((n, hp, wp, c), np.int64)
    img[:, pt : pt + h, pl : pl + w] = u.transpose(0, 2, 3, 1)
    acc = _tap_sweep(_sources(img, taps), taps, hp, wp, lambda s, wt: s * wt)
    return _finish_conv(_outputs(acc, wp, ho, wo, stride), thresh, flip, pool)
