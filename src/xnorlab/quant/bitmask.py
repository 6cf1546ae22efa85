"""One-pass numba kernels that store a float32 tensor's predicate as bits and read it back.

quant.lean saves a binary layer's +-1 values and its straight-through mask ``|x| <= 1`` as 1 bit
per value. The bit layout is ``np.packbits``'s: byte ``i`` holds values ``8i..8i+7``, the first
in the most significant bit; the last byte's unused bits are 0.

Each kernel is one pass over the float32 data, in blocks of :data:`BLOCK` values: a loop that
LLVM vectorizes turns values into 0/1 flag bytes (or back), and one multiply packs or spreads 8
flags per byte. :func:`sign_bits` also produces the sign itself, so a binarizer reads its
input once for the sign, its bits and the mask.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

__all__ = [
    "masked_grad", "pack_positive", "pack_unit_mask", "sample_pm1", "sign_bits", "unpack_pm1",
]

_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)
#: Flags (one 0/1 byte per value, as a little-endian uint64) times this, >> 56: the 8 flags
#: as one byte, the first in the most significant bit (no two partial products collide).
_PACK = np.uint64(0x8040201008040201)
#: A byte times 0x0101010101010101, masked with this: byte j keeps bit 7 - j of it.
_SPREAD, _SELECT = np.uint64(0x0101010101010101), np.uint64(0x0102040810204080)
#: Values per block: the block's flags stay in L1 between the two loops.
BLOCK = 4096


@njit(cache=True, inline="always")
def _sign(v):  # pragma: no cover - compiled
    # binarizers.sign: copysign(1, v + 0), so -0.0 gives +1 (a NaN keeps its sign bit).
    return np.float32(math.copysign(_ONE, v + _ZERO))


# Every loop below runs over plain slices with the loop variable as the index: numba checks a
# computed index for wraparound, which kept such loops scalar (3-10x slower).

@njit(cache=True)
def _flags(xs, unit_mask, fs):  # pragma: no cover - compiled
    for k in range(xs.size):
        v = xs[k]
        bit = (abs(v) <= _ONE) if unit_mask else (v > _ZERO)
        fs[k] = np.uint8(1) if bit else np.uint8(0)


@njit(cache=True)
def _sign_flags(xs, signs, fs, fm):  # pragma: no cover - compiled
    outside = 0
    for k in range(xs.size):
        v = xs[k]
        s = _sign(v)
        signs[k] = s
        fs[k] = np.uint8(1) if s > _ZERO else np.uint8(0)
        inside = abs(v) <= _ONE
        fm[k] = np.uint8(1) if inside else np.uint8(0)
        outside += 0 if inside else 1
    return outside


@njit(cache=True)
def _flags_to_bits(fs, out):  # pragma: no cover - compiled
    # fs holds 8 * out.size flags (the last word zero-padded by the caller).
    words = fs.view(np.uint64)
    for w in range(out.size):
        out[w] = np.uint8((words[w] * _PACK) >> np.uint64(56))


@njit(cache=True)
def _bits_to_flags(bits, fs):  # pragma: no cover - compiled
    words = fs.view(np.uint64)
    for w in range(bits.size):
        words[w] = (np.uint64(bits[w]) * _SPREAD) & _SELECT


@njit(cache=True)
def _padded(fs, m):  # pragma: no cover - compiled
    # The flags of a block's m values, zero-filled to whole bytes.
    whole = (m + 7) // 8 * 8
    for k in range(m, whole):
        fs[k] = 0
    return fs[:whole]


@njit(cache=True, parallel=True)
def _pack_nb(x, unit_mask, out):  # pragma: no cover - compiled
    for b in prange((x.size + BLOCK - 1) // BLOCK):
        start = b * BLOCK
        m = min(BLOCK, x.size - start)
        fs = np.empty(BLOCK, np.uint8)
        _flags(x[start:start + m], unit_mask, fs)
        _flags_to_bits(_padded(fs, m), out[start // 8:(start + m + 7) // 8])


@njit(cache=True, parallel=True)
def _sign_bits_nb(x, signs, sign_out, mask_out):  # pragma: no cover - compiled
    outside = 0
    for b in prange((x.size + BLOCK - 1) // BLOCK):
        start = b * BLOCK
        m = min(BLOCK, x.size - start)
        fs = np.empty(BLOCK, np.uint8)
        fm = np.empty(BLOCK, np.uint8)
        outside += _sign_flags(x[start:start + m], signs[start:start + m], fs, fm)
        _flags_to_bits(_padded(fs, m), sign_out[start // 8:(start + m + 7) // 8])
        _flags_to_bits(_padded(fm, m), mask_out[start // 8:(start + m + 7) // 8])
    return outside


@njit(cache=True, parallel=True)
def _sample_nb(x, u, out):  # pragma: no cover - compiled
    half = np.float32(0.5)
    for b in prange((x.size + BLOCK - 1) // BLOCK):
        start = b * BLOCK
        for k in range(start, min(start + BLOCK, x.size)):
            # binarizers.hard_sigmoid in float32, as torch computes it: (x + 1) * 0.5, then
            # clamped to [0, 1] (a NaN stays NaN, so u < p is false and the value -1).
            p = (x[k] + _ONE) * half
            p = _ZERO if p < _ZERO else (_ONE if p > _ONE else p)
            out[k] = _ONE if u[k] < p else -_ONE


@njit(cache=True)
def _pm1(fs, out):  # pragma: no cover - compiled
    for k in range(out.size):
        out[k] = _ONE if fs[k] else -_ONE


@njit(cache=True)
def _times_flags(g, fs, out):  # pragma: no cover - compiled
    # g * 1.0 or g * 0.0, as torch's grad * bool_mask: a masked negative gradient gives -0.0.
    for k in range(out.size):
        out[k] = g[k] * (_ONE if fs[k] else _ZERO)


@njit(cache=True, parallel=True)
def _unpack_pm1_nb(p, out):  # pragma: no cover - compiled
    for b in prange((out.size + BLOCK - 1) // BLOCK):
        start = b * BLOCK
        m = min(BLOCK, out.size - start)
        fs = np.empty(BLOCK, np.uint8)
        _bits_to_flags(p[start // 8:(start + m + 7) // 8], fs)
        _pm1(fs, out[start:start + m])


@njit(cache=True, parallel=True)
def _masked_nb(g, p, out):  # pragma: no cover - compiled
    for b in prange((out.size + BLOCK - 1) // BLOCK):
        start = b * BLOCK
        m = min(BLOCK, out.size - start)
        fs = np.empty(BLOCK, np.uint8)
        _bits_to_flags(p[start // 8:(start + m + 7) // 8], fs)
        _times_flags(g[start:start + m], fs, out[start:start + m])


def _flat(x: torch.Tensor) -> np.ndarray:
    if x.dtype != torch.float32:
        raise TypeError(f"expected a float32 tensor, got {x.dtype}")
    return x.detach().contiguous().reshape(-1).numpy()


def _bytes_for(n: int) -> np.ndarray:
    return np.empty((n + 7) // 8, dtype=np.uint8)


def _pack(x: torch.Tensor, unit_mask: bool) -> torch.Tensor:
    flat = _flat(x)
    out = _bytes_for(flat.size)
    _pack_nb(flat, unit_mask, out)
    return torch.from_numpy(out)


def pack_positive(x: torch.Tensor) -> torch.Tensor:
    """The bits of ``x > 0`` (a +-1 tensor's signs) as a flat uint8 tensor."""
    return _pack(x, False)


def pack_unit_mask(x: torch.Tensor) -> torch.Tensor:
    """The bits of ``|x| <= 1`` (the clipped straight-through mask) as a flat uint8 tensor."""
    return _pack(x, True)


def sign_bits(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """In one pass over ``x``: ``binarizers.sign(x)`` (float32, ``x``'s shape), the bits of that
    sign (as :func:`pack_positive` of it), the bits of ``|x| <= 1`` (as :func:`pack_unit_mask`)
    and the number of values outside ``[-1, 1]`` (NaN included)."""
    flat = _flat(x)
    signs = np.empty_like(flat)
    sign_out, mask_out = _bytes_for(flat.size), _bytes_for(flat.size)
    outside = _sign_bits_nb(flat, signs, sign_out, mask_out)
    return (torch.from_numpy(signs).reshape(x.shape), torch.from_numpy(sign_out),
            torch.from_numpy(mask_out), int(outside))


def sample_pm1(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """+1 where ``u < hard_sigmoid(x)``, -1 elsewhere (float32, ``x``'s shape): stochastic
    binarization with the uniform draws ``u``, in one pass (``torch.where`` over 0-dim
    operands took 10x longer than the draws' comparison)."""
    flat = _flat(x)
    out = np.empty_like(flat)
    _sample_nb(flat, _flat(u), out)
    return torch.from_numpy(out).reshape(x.shape)


def unpack_pm1(p: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A float32 tensor of ``shape``: +1 where a bit of ``p`` is set, -1 elsewhere."""
    out = np.empty(int(np.prod(shape)), dtype=np.float32)
    _unpack_pm1_nb(p.numpy(), out)
    return torch.from_numpy(out).reshape(shape)


def masked_grad(grad: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``grad * mask`` for the bool mask packed in ``p`` (same bits as torch's product)."""
    g = _flat(grad)
    out = np.empty_like(g)
    _masked_nb(g, p.numpy(), out)
    return torch.from_numpy(out).reshape(grad.shape)
