"""First dense layer on uint8 rows: the table tiles (AVX2 hosts), oneDNN's uint8 x int8
linear, the int8 GEMM (torch._int_mm and the numba fallback) with the exact 128-shift
correction and, below BITPLANE_MAX_ROWS rows, the bit-plane column kernel; plain and fused
with the threshold, vs the float64 reference and an int64 matmul."""

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

import xnorlab
from tests.packed.test_kernels import AVX2_FEATURES, ON_AVX2_HOST
from xnorlab.packed import kernels, reference
from xnorlab.packed.bits import pack_signs
from xnorlab.packed.layers import THRESH_MAX, THRESH_MIN
from xnorlab.packed.nibbles import host_has
from xnorlab.packed.pixel_tables import GROUP_PIXELS, RUN_GROUPS

THREADS = [t for t in (1, 2) if t <= numba.config.NUMBA_NUM_THREADS]
# (use_torch, tables): oneDNN, the numba int8 GEMM, and the table tiles where the CPU has AVX2
KERNELS = [(True, False), (False, False)] + [(False, True)] * host_has("avx2")

# (M, N, K): batch 1, K below / at / above word multiples, the paper MLP's 784, odd N; 300 rows
# are two oneDNN blocks, 784 pixels more than one tile's uint16 run of RUN_GROUPS groups
SHAPES = [(1, 1, 1), (1, 10, 784), (3, 5, 63), (7, 11, 64), (13, 7, 65), (66, 200, 130),
          (130, 70, 784), (2, 129, 3), (5, 300, 784), (300, 4000, 100)]
assert kernels.ONEDNN_BLOCK_BYTES // (4 * 4000) < 300 and GROUP_PIXELS * RUN_GROUPS < 784
assert min(m for m, _, _ in SHAPES) < kernels.BITPLANE_MAX_ROWS <= max(m for m, _, _ in SHAPES)


def _case(m, n, k, seed):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    u[0, : min(k, 7)] = 255  # extremes: the shift maps 255 to 127 and 0 to -128
    if m > 1:
        u[1] = 0
    w = rng.choice(np.array([-1, 1], dtype=np.int8), size=(n, k))
    return rng, u, w, u.astype(np.int64) @ w.astype(np.int64).T


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_uint8_gemm_equals_integer_matmul(m, n, k):
    _, u, w, want = _case(m, n, k, m * n + k)
    wts = reference.int8_weights(pack_signs(w), k)
    assert wts.w.shape == (k, n) and wts.w.dtype == np.int8
    assert np.array_equal(wts.colsum, w.sum(axis=1))
    ref = reference.uint8_gemm(u, wts)
    assert ref.dtype == np.int32 and np.array_equal(ref, want)
    for use_torch, tables in KERNELS:
        for threads in THREADS:
            got = kernels.uint8_gemm(u, wts, threads=threads, use_torch=use_torch, tables=tables)
            assert got.dtype == np.int32 and np.array_equal(got, want), (tables, use_torch, threads)
    if m >= kernels.BITPLANE_MAX_ROWS:  # torch's oneDNN quantized linear took these rows
        assert wts.plans["onednn"] is not None


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_uint8_gemm_fused_threshold(m, n, k):
    rng, u, w, y = _case(m, n, k, k + 1)
    wts = reference.int8_weights(pack_signs(w), k)
    t = rng.integers(-255 * k - 1, 255 * k + 2, size=n).astype(np.int32)
    t[: max(1, n // 4)] = THRESH_MIN
    t[n // 4 : n // 2] = THRESH_MAX
    near = rng.integers(0, m, size=n)  # thresholds at reached values: exact ties
    t[n // 2 :] = y[near, np.arange(n)][n // 2 :]
    flip = rng.random(n) < 0.5
    want = pack_signs(np.where(np.where(flip, y <= t, y >= t), 1, -1))
    assert np.array_equal(reference.uint8_gemm_threshold(u, wts, t, flip), want)
    for use_torch, tables in KERNELS:
        for threads in THREADS:
            got = kernels.uint8_gemm_threshold(u, wts, t, flip, threads=threads,
                                               use_torch=use_torch, tables=tables)
            assert np.array_equal(got, want), (tables, use_torch, threads)
    for threads in THREADS:  # prepared once (the table tiles' bounds and planes), run twice
        run = kernels.uint8_gemm_threshold_runner(m, wts, t, flip, threads=threads)
        assert np.array_equal(run(u), want) and np.array_equal(run(u), want), threads


@pytest.mark.skipif(not host_has("avx2"), reason="the table tiles need AVX2")
def test_table_tile_sums_hold_the_extremes():
    """All pixels 255 against +1 weights: every table entry of all four pixels is 60 per
    nibble, every byte sum of 4 groups 240 and every uint16 run 64 * 1020, the most each may
    hold before the tile widens it; -1 columns add nothing to the subset sums."""
    k = 3 * GROUP_PIXELS * RUN_GROUPS + 6
    u = np.full((7, k), 255, np.uint8)
    w = np.ones((130, k), np.int8)
    w[1::2] = -1
    want = u.astype(np.int64) @ w.astype(np.int64).T
    got = kernels.uint8_gemm(u, reference.int8_weights(pack_signs(w), k), tables=True)
    assert np.array_equal(got, want)


def test_uint8_gemm_rejects_bad_input():
    wts = reference.int8_weights(pack_signs(np.ones((3, 10))), 10)
    with pytest.raises(ValueError, match="uint8"):
        kernels.uint8_gemm(np.zeros((2, 10), np.int16), wts)
    with pytest.raises(ValueError, match="columns"):
        kernels.uint8_gemm(np.zeros((2, 9), np.uint8), wts)
    with pytest.raises(ValueError, match="columns"):
        reference.uint8_gemm(np.zeros((2, 9), np.uint8), wts)


def test_threshold_pack_rejects_values_outside_int32():
    y = np.array([[2**40]], dtype=np.int64)
    with pytest.raises(ValueError, match="int32"):
        kernels.threshold_pack(y, np.zeros(1, np.int32), np.zeros(1, bool))


_AVX2_SCRIPT = """
import numpy as np
from xnorlab.packed import kernels, reference
from xnorlab.packed.bits import pack_signs
rng = np.random.default_rng(1)
u = rng.integers(0, 256, size=(37, 784), dtype=np.uint8)
w = rng.choice(np.array([-1, 1], np.int8), size=(70, 784))
want = u.astype(np.int64) @ w.astype(np.int64).T
wts = reference.int8_weights(pack_signs(w), 784)
for use_torch, tables in ((True, False), (False, False), (False, True)):
    assert np.array_equal(kernels.uint8_gemm(u, wts, use_torch=use_torch, tables=tables), want)
t = want[0].astype(np.int32)
f = rng.random(70) < 0.5
bits = pack_signs(np.where(np.where(f, want <= t, want >= t), 1, -1))
for tables in (False, True):
    assert np.array_equal(kernels.uint8_gemm_threshold(u, wts, t, f, tables=tables), bits), tables
for name in ("_int8_matmul_nb", "_threshold_pack_nb", "_table_gemm_nb", "_pixel_tables_nb"):
    asm = "\\n".join(getattr(kernels, name).inspect_asm().values())
    assert asm and "zmm" not in asm, name + ": AVX-512 for AVX2"
print("ok")
"""


@pytest.mark.slow  # compiles the kernels afresh in a subprocess
@ON_AVX2_HOST
def test_uint8_gemm_is_exact_for_an_avx2_host(tmp_path):
    """numba compiled for Haswell and torch's kernels dispatched at AVX2 (no VNNI)."""
    env = dict(os.environ)
    env.update(NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES=AVX2_FEATURES,
               ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2",
               NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               PYTHONPATH=str(Path(xnorlab.__file__).parents[1]))
    r = subprocess.run([sys.executable, "-c", _AVX2_SCRIPT], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]
