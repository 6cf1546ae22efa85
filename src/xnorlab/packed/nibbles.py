"""AVX2 nibble-table sweeps of the byte-plane binary convs, and of the XNOR GEMMs.

For a weight byte ``w``, ``popcount(x ^ w) = T_lo[x & 15] + T_hi[x >> 4]`` with two 16-entry
tables that depend on ``w`` only. ``vpshufb`` looks up 32 such entries at once, so once the
source planes are split into nibbles (once per block, shared by every output channel and tap) a
tap costs two table lookups and two byte adds per 32 positions, where the XOR + popcount sweep
costs an XOR and the CPU's own nibble popcount (two masks, a shift, two ``vpshufb``, an add).
numba cannot express ``vpshufb``, so :func:`_nibble_pass` emits the loop as LLVM IR. A pass
sweeps :data:`NIBBLE_TAPS` taps for :data:`NIBBLE_OUTPUTS` output channels, its 8 tables held
in registers, so each nibble vector loaded serves two channels: loads, not lookups, bounded
the one-channel pass (3 taps: 7 loads per 6 lookups).

On this AVX2 EPYC (Zen 3) the sweep ran 2x as fast as the XOR + popcount one (one channel, 3
taps: 1.4x). Hosts with AVX-512 BITALG keep that one: ``vpopcntb`` counts 64 bytes at once.

The GEMM (``kernels._nibble_columns_nb``) runs the same pass with input rows as the output
channels, their bytes as the taps and output columns as the positions: the weights become
nibble planes once (:func:`weight_planes`), and :func:`_nibble_byte_pass` builds each row
byte's tables in registers (:func:`row_pair_sums`).
"""

from __future__ import annotations

import functools

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

#: Byte taps per pass and output channels per pass: their 8 tables stay in registers while
#: the pass sweeps the positions (2 x 2 measured 1.3x the speed of 3 x 1; 3 x 2 spilled).
NIBBLE_TAPS = 2
NIBBLE_OUTPUTS = 2
#: Positions per vector (a ``vpshufb`` on a ymm register).
NIBBLE_LANES = 32

_I8, _I32, _I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
_V32, _V16 = ir.VectorType(_I8, NIBBLE_LANES), ir.VectorType(_I8, 16)
_POPCOUNT4 = np.array([bin(v).count("1") for v in range(16)], np.uint8)


def host_has(feature: str) -> bool:
    """Whether the host CPU has ``feature`` (LLVM's name, e.g. ``"avx2"``)."""
    return bool(_host_features().get(feature))


@functools.cache
def _host_features() -> dict[str, bool]:
    return dict(llvm.get_host_cpu_features())


def nibble_sweeps() -> bool:
    """Whether the host runs the nibble-table sweep: AVX2 without AVX-512 BITALG."""
    return host_has("avx2") and not host_has("avx512bitalg")


def nibble_tables(bw: np.ndarray) -> np.ndarray:
    """Tables of byte-tap weights ``bw`` (taps, out) uint8: ``(groups, passes, 2 * 2 * 2 * 16)``
    uint8. Per group of :data:`NIBBLE_OUTPUTS` outputs and pass of :data:`NIBBLE_TAPS` taps,
    for each output and tap its low and high nibble table. Taps and outputs past the last are
    padded with zero tables (they add nothing)."""
    taps, co = bw.shape
    nib = np.arange(16, dtype=np.uint8)
    passes = -(-taps // NIBBLE_TAPS)
    groups = -(-co // NIBBLE_OUTPUTS)
    tables = np.zeros((passes * NIBBLE_TAPS, groups * NIBBLE_OUTPUTS, 2, 16), np.uint8)
    tables[:taps, :co, 0] = _POPCOUNT4[nib ^ (bw[:, :, None] & 15)]
    tables[:taps, :co, 1] = _POPCOUNT4[nib ^ (bw[:, :, None] >> 4)]
    tables = tables.reshape(passes, NIBBLE_TAPS, groups, NIBBLE_OUTPUTS, 32)
    return np.ascontiguousarray(tables.transpose(2, 0, 3, 1, 4).reshape(groups, passes, -1))


def _data(context, builder, aryty, ary):
    return context.make_array(aryty)(context, builder, ary).data


def _load(builder, base, index, vtype):
    ptr = builder.bitcast(builder.gep(base, [index]), vtype.as_pointer())
    return builder.load(ptr, align=1)


def _pshufb(builder):
    return cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(_V32, [_V32, _V32]), "llvm.x86.avx2.pshuf.b"
    )


def _emit_sweep(builder, accp, lop, hip, offp, tabs, blocks, stride):
    # the pass loop: per 32-position block, each acc row += the lookups of both nibbles
    pshufb = _pshufb(builder)
    offs = [builder.load(builder.gep(offp, [ir.Constant(_I64, t)])) for t in range(NIBBLE_TAPS)]
    rows = [builder.mul(stride, ir.Constant(_I64, c)) for c in range(NIBBLE_OUTPUTS)]
    with cgutils.for_range(builder, blocks) as loop:
        q = builder.mul(loop.index, ir.Constant(_I64, NIBBLE_LANES))
        at = [builder.add(q, row) for row in rows]
        sums = [_load(builder, accp, i, _V32) for i in at]
        for t in range(NIBBLE_TAPS):
            i = builder.add(offs[t], q)
            nibs = _load(builder, lop, i, _V32), _load(builder, hip, i, _V32)
            for c in range(NIBBLE_OUTPUTS):
                for half in range(2):
                    table = tabs[2 * (c * NIBBLE_TAPS + t) + half]
                    sums[c] = builder.add(sums[c], builder.call(pshufb, [table, nibs[half]]))
        for i, total in zip(at, sums, strict=True):
            ptr = builder.bitcast(builder.gep(accp, [i]), _V32.as_pointer())
            builder.store(total, ptr, align=1)


def _bytes_ok(*arrays) -> bool:
    return all(isinstance(a, types.Array) and a.dtype == types.uint8 for a in arrays)


@intrinsic
def _nibble_pass(typingctx, acc, lo, hi, offs, tables, blocks, stride):
    """For 32-position blocks q: ``acc[c, q] += sum_t T_lo[c, t][lo[offs[t] + q]] +
    T_hi[c, t][hi[offs[t] + q]]`` over the :data:`NIBBLE_TAPS` taps of one pass and the
    :data:`NIBBLE_OUTPUTS` rows ``c`` of ``acc`` (``stride`` bytes apart; ``tables``: their
    (c, t, lo / hi) tables of 16 bytes)."""
    if not _bytes_ok(acc, lo, hi, tables):
        return None
    sig = types.void(acc, lo, hi, offs, tables, blocks, stride)

    def codegen(context, builder, signature, args):
        accp, lop, hip, offp, tabp = (
            _data(context, builder, signature.args[i], args[i]) for i in range(5)
        )
        both_halves = ir.Constant(ir.VectorType(_I32, NIBBLE_LANES), [i % 16 for i in range(32)])
        tabs = []
        for k in range(2 * NIBBLE_TAPS * NIBBLE_OUTPUTS):
            half = _load(builder, tabp, ir.Constant(_I64, 16 * k), _V16)
            tabs.append(builder.shuffle_vector(half, half, both_halves))
        _emit_sweep(builder, accp, lop, hip, offp, tabs, args[5], args[6])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _nibble_byte_pass(typingctx, acc, lo, hi, offs, x00, x01, x10, x11, blocks, stride):
    """:func:`_nibble_pass` with the tables of bytes ``x[c][t]`` (row c, tap t) built in
    registers: ``T_lo = vpshufb(popcount of 0..15, iota ^ splat(x & 15))``, and ``x >> 4``
    for ``T_hi`` (the GEMM's input rows play the output channels, their bytes the taps)."""
    if not _bytes_ok(acc, lo, hi):
        return None
    if not all(isinstance(x, types.Integer) and x.bitwidth == 8 for x in (x00, x01, x10, x11)):
        return None
    sig = types.void(acc, lo, hi, offs, x00, x01, x10, x11, blocks, stride)

    def codegen(context, builder, signature, args):
        accp, lop, hip, offp = (
            _data(context, builder, signature.args[i], args[i]) for i in range(4)
        )
        pshufb = _pshufb(builder)
        popcounts = ir.Constant(_V32, [int(_POPCOUNT4[i % 16]) for i in range(32)])
        iota = ir.Constant(_V32, [i % 16 for i in range(32)])
        splat = ir.Constant(ir.VectorType(_I32, NIBBLE_LANES), [0] * NIBBLE_LANES)
        tabs = []
        for x in args[4:8]:  # (c, t) order: x00, x01, x10, x11
            low, high = builder.and_(x, ir.Constant(_I8, 15)), builder.lshr(x, ir.Constant(_I8, 4))
            for nib in (low, high):
                one = builder.insert_element(ir.Constant(_V32, None), nib, ir.Constant(_I32, 0))
                index = builder.xor(iota, builder.shuffle_vector(one, one, splat))
                tabs.append(builder.call(pshufb, [popcounts, index]))
        _emit_sweep(builder, accp, lop, hip, offp, tabs, args[8], args[9])
        return context.get_dummy_value()

    return sig, codegen


def weight_planes(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Packed weight rows ``b`` (N, W) as the index planes of the nibble column GEMM:
    ``(lo, hi, offs)``, byte ``t`` of every row's words at ``offs[t] = t * Np`` of the flat
    low / high nibble planes (N padded to Np, a multiple of :data:`NIBBLE_LANES`, with 0)."""
    n, words = b.shape
    npad = -(-n // NIBBLE_LANES) * NIBBLE_LANES
    planes = np.zeros((words * 8, npad), np.uint8)
    planes[:, :n] = np.ascontiguousarray(b).view(np.uint8).reshape(n, words * 8).T  # LE bytes
    offs = np.arange(words * 8, dtype=np.int64) * npad
    return (planes & 15).reshape(-1), (planes >> 4).reshape(-1), offs


@njit(cache=True)
def row_pair_sums(lo, hi, offs, a8, i0, per_sum, acc, part):  # pragma: no cover - compiled
    """``acc[c, j] = sum_b popcount(a8[i0 + c, b] ^ weight byte b of column j)`` for rows
    ``i0, i0 + 1`` of uint8 ``a8`` (M, B), B even (a missing second row repeats the first),
    against the weight nibble planes of :func:`weight_planes`; uint16 ``acc`` (2, Np) and a
    uint8 ``part`` of the same shape for the sums of ``per_sum`` passes."""
    i1 = min(i0 + 1, a8.shape[0] - 1)
    blocks = acc.shape[1] // NIBBLE_LANES
    passes = a8.shape[1] // NIBBLE_TAPS
    acc[:] = 0
    for p0 in range(0, passes, per_sum):
        part[:] = 0
        for p in range(p0, min(passes, p0 + per_sum)):
            b = NIBBLE_TAPS * p
            _nibble_byte_pass(part, lo, hi, offs[b:], a8[i0, b], a8[i0, b + 1], a8[i1, b],
                              a8[i1, b + 1], blocks, part.strides[0])
        for c in range(NIBBLE_OUTPUTS):
            for j in range(acc.shape[1]):
                acc[c, j] += part[c, j]


@njit(cache=True, inline="always")
def split_nibbles(src, lo, hi):  # pragma: no cover - compiled
    """``lo = src & 15``, ``hi = src >> 4`` (uint8 planes of the same length)."""
    for i in range(src.shape[0]):
        lo[i] = src[i] & 15
        hi[i] = src[i] >> 4


@njit(cache=True, inline="always")
def _sum_passes(lo, hi, offs, tables, g, p0, p1, acc):  # pragma: no cover - compiled
    blocks = acc.shape[1] // NIBBLE_LANES
    for p in range(p0, p1):
        _nibble_pass(acc, lo, hi, offs[NIBBLE_TAPS * p :], tables[g, p], blocks, acc.strides[0])


def nibble_tap_sums(lo, hi, offs, tables, g, per_sum, acc, part):  # pragma: no cover - compiled
    """``acc[c, q] = sum_i popcount(byte i of position q ^ weight byte i of output
    NIBBLE_OUTPUTS g + c)`` over every byte tap ``i`` (source offsets ``offs``, padded to whole
    passes; ``tables`` from :func:`nibble_tables`). ``acc`` is (:data:`NIBBLE_OUTPUTS`, L),
    L a multiple of :data:`NIBBLE_LANES`. A uint8 ``acc`` takes the passes directly; a wider one
    adds uint8 sums of ``per_sum`` passes in ``part`` (same shape, uint8)."""


@overload(nibble_tap_sums, inline="always")
def _nibble_tap_sums(lo, hi, offs, tables, g, per_sum, acc, part):
    if acc.dtype == types.uint8:

        def direct(lo, hi, offs, tables, g, per_sum, acc, part):  # pragma: no cover - compiled
            acc[:] = 0
            _sum_passes(lo, hi, offs, tables, g, 0, tables.shape[1], acc)

        return direct

    def widened(lo, hi, offs, tables, g, per_sum, acc, part):  # pragma: no cover - compiled
        acc[:] = 0
        passes = tables.shape[1]
        for p0 in range(0, passes, per_sum):
            part[:] = 0
            _sum_passes(lo, hi, offs, tables, g, p0, min(passes, p0 + per_sum), part)
            for c in range(acc.shape[0]):
                for q in range(acc.shape[1]):
                    acc[c, q] += part[c, q]

    return widened
