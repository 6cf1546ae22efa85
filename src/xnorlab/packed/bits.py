"""Bit packing of +-1 vectors into ``uint64`` words (the packed engine's storage convention).

Convention (the project's one convention, see ``docs/packed_format.md``):

* bit ``1`` stands for +1, bit ``0`` for -1, and ``sign(0) = +1``;
* a vector of length ``K`` is packed along its **last axis** into ``ceil(K / 64)`` ``uint64``
  words; element ``k`` lives in word ``k // 64`` at bit position ``k % 64`` counted from the
  least significant bit (**LSB-first**). On disk the words are little-endian, so byte
  ``k // 8`` of the packed row holds element ``k`` at bit ``k % 8`` (``np.packbits(...,
  bitorder="little")`` order);
* the unused high bits of the last word are **0** in every packed operand, so for two packed
  +-1 vectors ``a``, ``w`` of length ``K``: ``dot(a, w) = K - 2 * popcount(a XOR w)``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "WORD_BITS",
    "n_words",
    "pack_bits",
    "pack_signs",
    "unpack_bits",
    "unpack_signs",
    "valid_mask",
    "popcount_rows",
]

WORD_BITS = 64


def n_words(k: int) -> int:
    """Number of ``uint64`` words holding ``k`` bits."""
    if k < 0:
        raise ValueError(f"length must be >= 0, got {k}")
    return (int(k) + WORD_BITS - 1) // WORD_BITS


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a bit array (bool, or integers where nonzero means bit 1) along its last axis.

    Returns ``uint64`` of shape ``bits.shape[:-1] + (n_words(K),)``, LSB-first, high padding bits
    0. For +-1 (or real) values use :func:`pack_signs`.
    """
    b = np.asarray(bits)
    if b.ndim == 0:
        raise ValueError("pack_bits needs at least one axis")
    k = b.shape[-1]
    nw = n_words(k)
    lead = b.shape[:-1]
    b = b.reshape(-1, k)
    if b.dtype != np.bool_:
        b = b != 0
    if k != nw * WORD_BITS:
        padded = np.zeros((b.shape[0], nw * WORD_BITS), dtype=np.bool_)
        padded[:, :k] = b
        b = padded
    by = np.packbits(b, axis=-1, bitorder="little")  # (R, nw * 8) uint8
    words = np.ascontiguousarray(by).view("<u8").astype(np.uint64, copy=False)
    return np.ascontiguousarray(words.reshape(*lead, nw))


def pack_signs(x: np.ndarray) -> np.ndarray:
    """Pack the signs of ``x`` (+1 -> bit 1, -1 -> bit 0, ``sign(0) = +1``) along the last axis.

    Accepts +-1 arrays and, more generally, any real array (bit = ``x >= 0``). Bool input is
    taken as bits (True = +1).
    """
    a = np.asarray(x)
    if a.dtype == np.bool_:
        return pack_bits(a)
    if np.issubdtype(a.dtype, np.floating) and np.isnan(a).any():
        raise ValueError("cannot pack NaN values")
    return pack_bits(a >= 0)


def unpack_bits(packed: np.ndarray, k: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``uint8`` 0/1 array of shape ``packed.shape[:-1] + (k,)``."""
    p = np.asarray(packed)
    if p.dtype != np.uint64:
        raise ValueError(f"packed array must be uint64, got {p.dtype}")
    if p.ndim == 0 or p.shape[-1] != n_words(k):
        raise ValueError(f"last axis must hold n_words({k}) = {n_words(k)} words, got {p.shape}")
    lead = p.shape[:-1]
    by = np.ascontiguousarray(p.reshape(-1, p.shape[-1])).astype("<u8", copy=False).view(np.uint8)
    bits = np.unpackbits(by, axis=-1, bitorder="little")[:, :k]
    return bits.reshape(*lead, k)


def unpack_signs(packed: np.ndarray, k: int, dtype=np.int8) -> np.ndarray:
    """Inverse of :func:`pack_signs`: a +-1 array of ``dtype`` (bit 1 -> +1, bit 0 -> -1)."""
    bits = unpack_bits(packed, k)
    return (bits.astype(dtype) * 2 - 1).astype(dtype, copy=False)


def valid_mask(k: int) -> np.ndarray:
    """Packed all-ones (+1) vector of length ``k``: ``n_words(k)`` words, padding bits 0.

    This is the packed value of a +1 padding pixel (conv padding of binarized inputs).
    """
    return pack_bits(np.ones(k, dtype=np.bool_))


def popcount_rows(packed: np.ndarray) -> np.ndarray:
    """Number of set bits per row (sum over the last axis) as int64."""
    return np.bitwise_count(np.asarray(packed)).sum(axis=-1, dtype=np.int64)
