"""First dense layer on AVX2 without VNNI: uint8 pixels times +-1 weights with ``vpmaddubsw``.

``vpmaddubsw`` multiplies 32 unsigned bytes by 32 signed bytes and adds adjacent products
into 16 int16 lanes: 32 MACs in one instruction, exact here (a pair sums to at most
``2 * 255`` in magnitude), so 64 sums add up in an int16 lane (``64 * 510 = 32640``) before
they are widened. oneDNN's AVX2 path for general int8 needs a second multiply (``vpmaddwd``)
per 32 MACs to widen; with +-1 weights the widening waits 64 steps.

The register tile (:func:`madd_tile`, LLVM IR: numba cannot express ``vpmaddubsw``) is laid
out as VNNI's ``vpdpbusd`` is: a row's 4 pixels ``k .. k + 3`` are broadcast as one dword (9%
faster on Zen 3 than broadcasting pixel pairs as words), and a weight vector holds 8
columns' 4 weights each, so int16 lanes ``2i`` and ``2i + 1`` are column i's two pairs; the
tile adds them with ``vpmaddwd`` by ones when it widens. :data:`MADD_ROWS` rows x
:data:`MADD_BLOCKS` blocks of 8 columns: 12 int16 accumulators in registers.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .nibbles import _data, host_has

#: Rows and 8-column blocks of the register tile: 12 int16 accumulators, 2 weight vectors, a
#: broadcast pixel quad and a product (16 ymm registers).
MADD_ROWS = 6
MADD_BLOCKS = 2  # 6 x 2, 5 x 2 and 4 x 2 ran within 3%; 3 x 4 (weights reloaded) 0.7x
#: Blocks of the one-row tile (the rows past whole tiles, and batch 1): each weight vector
#: serves one row, so it is loaded into the multiply itself. 784 x 4096 thresholded at batch
#: 1, 1 thread: 89 us, against 120 us for the bit-plane kernel (streaming 8x fewer weight
#: bytes, but 8 passes).
MADD_ROW_BLOCKS = 8
#: Columns per block (one weight vector: 8 columns x 4 weights).
MADD_BLOCK_COLS = 8
#: Pixel quads an int16 lane sums before the tile widens it: 64 * 2 * 255 < 2^15.
MADD_QUADS = 64
#: Column blocks per task (two output words): the task's weights (784 pixels x 128 columns:
#: 100 KB) stay in L2 while it sweeps every row of the call.
MADD_TASK_BLOCKS = 16

_I16, _I32, _I64 = ir.IntType(16), ir.IntType(32), ir.IntType(64)
_V32I8, _V16I16, _V8I32 = (ir.VectorType(ir.IntType(8), 32), ir.VectorType(_I16, 16),
                           ir.VectorType(_I32, 8))


def madd_first_layer() -> bool:
    """Whether the host runs the tile for the first layer: AVX2 without an int8 dot product
    (VNNI), where oneDNN's uint8 x int8 GEMM does two multiplies per 32 MACs."""
    vnni = host_has("avx512vnni") or host_has("avxvnni")
    return host_has("avx2") and not vnni


def _at(builder, base, index, vtype):
    return builder.bitcast(builder.gep(base, [index]), vtype.as_pointer())


def _x86(builder, name, ret, *args):
    fn = ir.FunctionType(ret, [a.type for a in args])
    return builder.call(cgutils.get_or_insert_function(builder.module, fn, name), args)


def _tile(nrows: int, nblocks: int):
    """The register tile of ``nrows`` rows x ``nblocks`` blocks as a numba intrinsic."""

    @intrinsic
    def tile(typingctx, y, u32, w4, m0, b0, t0, q0, q1):
        ok = (isinstance(y, types.Array) and y.dtype == types.int32
              and u32.dtype == types.uint32 and w4.dtype == types.int8)
        if not ok:
            return None
        return types.void(y, u32, w4, m0, b0, t0, q0, q1), _tile_codegen(nrows, nblocks)

    return tile


def _tile_codegen(nrows: int, nblocks: int):
    def codegen(context, builder, signature, args):
        yp, up, wp = (_data(context, builder, signature.args[i], args[i]) for i in range(3))
        m0, b0, t0, q0, q1 = args[3:]
        ncols, quads = (cgutils.unpack_tuple(builder, context.make_array(signature.args[i])(
            context, builder, args[i]).shape)[1] for i in (0, 1))
        accs = [[cgutils.alloca_once(builder, _V16I16) for _ in range(nblocks)]
                for _ in range(nrows)]
        for acc in (a for row in accs for a in row):
            builder.store(ir.Constant(_V16I16, [0] * 16), acc)
        rows = [builder.mul(builder.add(m0, ir.Constant(_I64, r)), quads) for r in range(nrows)]
        blocks = [builder.mul(builder.add(b0, ir.Constant(_I64, c)), quads)
                  for c in range(nblocks)]
        splat = ir.Constant(_V8I32, [0] * 8)
        with cgutils.for_range_slice(builder, q0, q1, ir.Constant(_I64, 1)) as (q, _):
            ws = [builder.load(_at(builder, wp, builder.mul(builder.add(blk, q),
                                                            ir.Constant(_I64, 32)), _V32I8),
                               align=1) for blk in blocks]
            for r, row in enumerate(rows):
                quad = builder.load(builder.gep(up, [builder.add(row, q)]), align=4)
                one = builder.insert_element(ir.Constant(_V8I32, None), quad, ir.Constant(_I32, 0))
                pix = builder.bitcast(builder.shuffle_vector(one, one, splat), _V32I8)
                for c in range(nblocks):
                    prod = _x86(builder, "llvm.x86.avx2.pmadd.ub.sw", _V16I16, pix, ws[c])
                    builder.store(builder.add(builder.load(accs[r][c]), prod), accs[r][c])
        ones = ir.Constant(_V16I16, [1] * 16)
        for r in range(nrows):
            base = builder.mul(ir.Constant(_I64, r), ncols)
            for c in range(nblocks):
                col = builder.mul(builder.add(t0, ir.Constant(_I64, c)),
                                  ir.Constant(_I64, MADD_BLOCK_COLS))
                ptr = _at(builder, yp, builder.add(base, col), _V8I32)
                wide = _x86(builder, "llvm.x86.avx2.pmadd.wd", _V8I32,
                            builder.load(accs[r][c]), ones)
                builder.store(builder.add(builder.load(ptr, align=4), wide), ptr, align=4)
        return context.get_dummy_value()

    return codegen


#: ``madd_tile(y, u32, w4, m0, b0, t0, q0, q1)``: ``y[r, 8 (t0 + c) + j] += sum_{q0 <= q < q1}
#: u[m0 + r, 4q : 4q + 4] . w[4q : 4q + 4, 8 (b0 + c) + j]`` for the tile's :data:`MADD_ROWS`
#: rows r and :data:`MADD_BLOCKS` blocks c, ``q1 - q0 <=`` :data:`MADD_QUADS`; ``y`` int32
#: (rows, 8 T), ``u32`` the uint8 rows as pixel quads (M, Q), ``w4`` from :func:`madd_weights`.
madd_tile = _tile(MADD_ROWS, MADD_BLOCKS)
#: The same for one row and :data:`MADD_ROW_BLOCKS` blocks (the rows past whole tiles).
madd_row = _tile(1, MADD_ROW_BLOCKS)


def madd_weights(w: np.ndarray) -> np.ndarray:
    """+-1 int8 weights ``w`` (K, N) in the tile's layout: int8 (B, Q, 32), per block of 8
    columns (B padded to whole tasks) and pixel quad (K padded to a multiple of 4) the 8
    columns' 4 weights each. Padding is zero weight: it adds nothing."""
    k, n = w.shape
    quads = -(-k // 4)
    cols = MADD_BLOCK_COLS * MADD_TASK_BLOCKS
    blocks = -(-n // cols) * MADD_TASK_BLOCKS
    padded = np.zeros((4 * quads, MADD_BLOCK_COLS * blocks), np.int8)
    padded[:k, :n] = w
    # (Q, 4, B, 8) -> (B, Q, 8, 4)
    tiles = padded.reshape(quads, 4, blocks, MADD_BLOCK_COLS).transpose(2, 0, 3, 1)
    return np.ascontiguousarray(tiles).reshape(blocks, quads, 32)
