"""First dense layer on AVX2 without VNNI: uint8 pixels times +-1 weights by table lookups.

With ``b = (w > 0)`` the layer is ``y = 2 sum_k u_k b_k - sum_k u_k``. Split each pixel into
nibbles, ``u = 16 h + l``, and take pixels in groups of 4: for a row and a group, the 16
subset sums ``L[p] = sum_{i in p} l_i`` and ``H[p]`` (at most 60: a byte) are two ``vpshufb``
tables, and a column's 4 weight bits are the index ``p``. One ``vpshufb`` then does 32
columns x 4 pixels of one nibble, where ``vpmaddubsw`` does 32 MACs; the byte sums of 4 groups
(at most 240) are widened as ``L + 16 H`` by one ``vpmaddubsw`` with ``(1, 16)``, into uint16
lanes that hold 64 groups (``64 * 1020 < 2^16``) before they go to int32.

:func:`build_tables` writes a row's tables (its 196 groups: 6 KB for 784 pixels) once per
call; :func:`table_tile` (LLVM IR: numba cannot express ``vpshufb``) keeps
:data:`TABLE_ROWS` rows x :data:`TABLE_BLOCKS` blocks of 32 columns in registers, loading
per group one index vector per block and two tables per row. Index planes
(:func:`index_planes`) hold one byte per column and group, 4x smaller than int8 weights.

On this AVX2 EPYC (Zen 3) the tiles ran 1.05-1.3x the ``vpmaddubsw`` tile they replaced from
64 rows and 2.5x at batch 1, about 2.7 G lookups/s per core; without the widening they ran
about as fast, and the XNOR nibble GEMM looks up at a like 3.2 G/s: ``vpshufb`` bounds both.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .nibbles import _data, _pshufb, host_has

#: Rows and 32-column blocks of the register tile: 8 byte accumulators, 4 tables and 2 index
#: vectors in registers, its 8 uint16 sums spilled to L1 (2 x 2 ran as fast as 1 x 2 and
#: faster than 2 x 1, 3 x 1 and 1 x 4).
TABLE_ROWS = 2
TABLE_BLOCKS = 2
#: Blocks of the one-row tile (batch 1, and the last row of an odd batch).
ROW_BLOCKS = 4
#: Columns per block (one index vector).
BLOCK_COLS = 32
#: Pixels per group (4 weight bits index a 16-entry table).
GROUP_PIXELS = 4
#: Groups whose byte sums add up before they are widened: 4 * 60 = 240 < 2^8.
BYTE_GROUPS = 4
#: Groups whose sums a uint16 lane holds: 64 * (60 + 16 * 60) = 65280 < 2^16.
RUN_GROUPS = 64
#: Bytes of a row's tables for one group: L (16) then H (16).
TABLE_BYTES = 32
#: Column blocks per task: the task's index planes (196 groups x 512 columns: 100 KB) stay in
#: L2 while it sweeps its rows.
TABLE_CHUNK_BLOCKS = 16
#: Rows per task at most (fewer where the batch would give a thread fewer than two tasks).
TABLE_TASK_ROWS = 64

_I8, _I16, _I32, _I64 = (ir.IntType(b) for b in (8, 16, 32, 64))
_V32I8, _V16I8 = ir.VectorType(_I8, 32), ir.VectorType(_I8, 16)
_V16I16, _V8I32, _V16I32 = (ir.VectorType(_I16, 16), ir.VectorType(_I32, 8),
                            ir.VectorType(_I32, 16))


def table_first_layer() -> bool:
    """Whether the host runs the table tiles for the first layer: AVX2 without an int8 dot
    product (VNNI), where oneDNN's uint8 x int8 GEMM does two multiplies per 32 MACs."""
    vnni = host_has("avx512vnni") or host_has("avxvnni")
    return host_has("avx2") and not vnni


def _at(builder, base, index, vtype):
    return builder.bitcast(builder.gep(base, [index]), vtype.as_pointer())


def _x86(builder, name, ret, *args):
    fn = ir.FunctionType(ret, [a.type for a in args])
    return builder.call(cgutils.get_or_insert_function(builder.module, fn, name), args)


def _i64(v: int):
    return ir.Constant(_I64, v)


def _bytes(values):
    return ir.Constant(_V32I8, [v & 0xFF for v in values])


#: Index position of output column o in a block: the widening's in-lane unpacks put index
#: bytes 0-7 and 16-23 in the low uint16 half, 8-15 and 24-31 in the high one.
OUT_POSITION = np.array([o if o < 8 or o >= 24 else o + 8 if o < 16 else o - 8
                         for o in range(BLOCK_COLS)])


@intrinsic
def build_tables(typingctx, tabs, u32, m, t):
    """``tabs[t, g] = L table | H table`` of row ``m`` of ``u32`` (the uint8 rows as pixel
    quads, (M, G)) for every group g: byte p of ``L`` is the sum of the low nibbles of the
    pixels i in p, ``H`` the same for the high nibbles. ``tabs`` uint8 (T, G, 32)."""
    if not (isinstance(tabs, types.Array) and tabs.dtype == types.uint8
            and u32.dtype == types.uint32):
        return None

    def codegen(context, builder, signature, args):
        tp, up = (_data(context, builder, signature.args[i], args[i]) for i in range(2))
        groups = cgutils.unpack_tuple(builder, context.make_array(signature.args[1])(
            context, builder, args[1]).shape)[1]
        m, t = args[2], args[3]
        pshufb = _pshufb(builder)
        # lane 0 gets the low nibbles of the quad, lane 1 the high ones
        shifts = ir.Constant(_V8I32, [0] * 4 + [4] * 4)
        nibble = ir.Constant(_V8I32, [0x0F0F0F0F] * 8)
        picks = [_bytes([i if (p % 16) >> i & 1 else 0x80 for p in range(32)])
                 for i in range(GROUP_PIXELS)]
        splat = ir.Constant(_V8I32, [0] * 8)
        row, base = builder.mul(m, groups), builder.mul(t, groups)
        with cgutils.for_range(builder, groups) as loop:
            g = loop.index
            quad = builder.load(builder.gep(up, [builder.add(row, g)]), align=4)
            one = builder.insert_element(ir.Constant(_V8I32, None), quad, ir.Constant(_I32, 0))
            wide = builder.shuffle_vector(one, one, splat)
            nibs = builder.bitcast(builder.and_(builder.lshr(wide, shifts), nibble), _V32I8)
            sums = [builder.call(pshufb, [nibs, pick]) for pick in picks]
            total = builder.add(builder.add(sums[0], sums[1]), builder.add(sums[2], sums[3]))
            at = builder.mul(builder.add(base, g), _i64(32))
            builder.store(total, _at(builder, tp, at, _V32I8), align=1)
        return context.get_dummy_value()

    return types.void(tabs, u32, m, t), codegen


def _tile(nrows: int, nblocks: int):
    """The register tile of ``nrows`` rows x ``nblocks`` blocks as a numba intrinsic."""

    @intrinsic
    def tile(typingctx, y, tabs, idx, t0, b0, c0, g0, g1):
        ok = (isinstance(y, types.Array) and y.dtype == types.int32
              and tabs.dtype == types.uint8 and idx.dtype == types.uint8)
        if not ok:
            return None
        return types.void(y, tabs, idx, t0, b0, c0, g0, g1), _tile_codegen(nrows, nblocks)

    return tile


def _unpack(half: int) -> list[int]:
    # vpunpck{l,h}bw of (a, b) as a shufflevector mask: per 128-bit lane, bytes 8 half + i
    return [e for lane in (0, 16) for i in range(8 * half, 8 * half + 8)
            for e in (lane + i, 32 + lane + i)]


def _tile_codegen(nrows: int, nblocks: int):
    def codegen(context, builder, signature, args):
        yp, tp, ip = (_data(context, builder, signature.args[i], args[i]) for i in range(3))
        ncols = cgutils.unpack_tuple(builder, context.make_array(signature.args[0])(
            context, builder, args[0]).shape)[1]
        groups = cgutils.unpack_tuple(builder, context.make_array(signature.args[1])(
            context, builder, args[1]).shape)[1]
        t0, b0, c0, g0, g1 = args[3:]
        pshufb = _pshufb(builder)
        scale = _bytes([1, 16] * 16)
        acc = [[[cgutils.alloca_once(builder, _V16I16) for _ in range(2)]
                for _ in range(nblocks)] for _ in range(nrows)]
        for a in (a for row in acc for blk in row for a in blk):
            builder.store(ir.Constant(_V16I16, [0] * 16), a)
        tab_rows = [builder.mul(builder.add(t0, _i64(r)), groups) for r in range(nrows)]
        idx_blocks = [builder.mul(builder.add(b0, _i64(c)), groups) for c in range(nblocks)]
        both = ir.Constant(ir.VectorType(_I32, 32), [i % 16 for i in range(32)])
        with cgutils.for_range_slice(builder, g0, g1, _i64(BYTE_GROUPS)) as (s, _):
            lows = [[None] * nblocks for _ in range(nrows)]
            highs = [[None] * nblocks for _ in range(nrows)]
            for j in range(BYTE_GROUPS):
                g = builder.add(s, _i64(j))
                ids = [builder.load(_at(builder, ip, builder.mul(builder.add(blk, g), _i64(32)),
                                        _V32I8), align=1) for blk in idx_blocks]
                for r, row in enumerate(tab_rows):
                    at = builder.mul(builder.add(row, g), _i64(32))
                    tabs = []
                    for half in range(2):
                        raw = builder.load(_at(builder, tp, builder.add(at, _i64(16 * half)),
                                               _V16I8), align=1)
                        tabs.append(builder.shuffle_vector(raw, raw, both))
                    for c in range(nblocks):
                        lo, hi = (builder.call(pshufb, [tab, ids[c]]) for tab in tabs)
                        lows[r][c] = lo if j == 0 else builder.add(lows[r][c], lo)
                        highs[r][c] = hi if j == 0 else builder.add(highs[r][c], hi)
            for r in range(nrows):
                for c in range(nblocks):
                    for half in range(2):
                        pairs = builder.shuffle_vector(lows[r][c], highs[r][c],
                                                       ir.Constant(ir.VectorType(_I32, 32),
                                                                   _unpack(half)))
                        wide = _x86(builder, "llvm.x86.avx2.pmadd.ub.sw", _V16I16, pairs, scale)
                        slot = acc[r][c][half]
                        builder.store(builder.add(builder.load(slot), wide), slot)
        for r in range(nrows):
            base = builder.mul(_i64(r), ncols)
            for c in range(nblocks):
                for half in range(2):
                    col = builder.add(c0, _i64(BLOCK_COLS * c + 16 * half))
                    ptr = _at(builder, yp, builder.add(base, col), _V16I32)
                    wide = builder.zext(builder.load(acc[r][c][half]), _V16I32)
                    builder.store(builder.add(builder.load(ptr, align=4), wide), ptr, align=4)
        return context.get_dummy_value()

    return codegen


#: ``table_tile(y, tabs, idx, t0, b0, c0, g0, g1)``: ``y[r, c0 + 32 c + o] += sum_{g0 <= g <
#: g1} L_g[p] + 16 H_g[p]`` with ``p = idx[b0 + c, g, OUT_POSITION[o]]`` and the tables of
#: row ``t0 + r`` of ``tabs``, for the tile's :data:`TABLE_ROWS` rows r and
#: :data:`TABLE_BLOCKS` blocks c; ``g1 - g0`` a multiple of :data:`BYTE_GROUPS`, at most
#: :data:`RUN_GROUPS`. ``y`` int32 (rows, C), ``idx`` from :func:`index_planes`.
table_tile = _tile(TABLE_ROWS, TABLE_BLOCKS)
#: The same for one row and :data:`ROW_BLOCKS` blocks.
table_row = _tile(1, ROW_BLOCKS)


def index_planes(w: np.ndarray, cols_multiple: int) -> np.ndarray:
    """+-1 int8 weights ``w`` (K, N) as the tile's index planes: uint8 (B, G, 32), per block of
    32 columns (N padded to a multiple of ``cols_multiple``) and group of 4 pixels (K padded to
    a multiple of 16 pixels: whole widening steps) the 4 bits ``w > 0`` of each column, in the
    block order :data:`OUT_POSITION`. Padding is weight -1 (bit 0): it adds nothing."""
    k, n = w.shape
    groups = -(-k // (GROUP_PIXELS * BYTE_GROUPS)) * BYTE_GROUPS
    cols = -(-n // cols_multiple) * cols_multiple
    bits = np.zeros((GROUP_PIXELS * groups, cols), np.uint8)
    bits[:k, :n] = w > 0
    weights = (1 << np.arange(GROUP_PIXELS, dtype=np.uint8))[None, :, None]
    nibs = (bits.reshape(groups, GROUP_PIXELS, cols) * weights).sum(axis=1, dtype=np.uint8)
    planes = np.empty((cols // BLOCK_COLS, groups, BLOCK_COLS), np.uint8)
    planes[:, :, OUT_POSITION] = nibs.reshape(groups, -1, BLOCK_COLS).transpose(1, 0, 2)
    return planes
