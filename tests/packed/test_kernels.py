import numba
import numpy as np
import pytest

from xnorlab.packed import kernels, reference
from xnorlab.packed.bits import pack_signs
from xnorlab.packed.layers import THRESH_MAX, THRESH_MIN
from xnorlab.packed.nibbles import host_has

#: Thread counts to test: 2 only where numba may use 2 (NUMBA_NUM_THREADS caps it).
THREADS = [t for t in (1, 2) if t <= numba.config.NUMBA_NUM_THREADS]

SHAPES = [
    (1, 1, 1),
    (3, 5, 63),
    (7, 11, 64),
    (13, 7, 65),
    (70, 200, 1000),
    (9, 385, 130),
    (130, 13, 257),
    (33, 300, 1024),  # 16 words: the column kernel's widest rows, two column tiles
    (21, 70, 1025),  # 17 words: the tiled kernel
    (1, 300, 1100),  # batch 1-3 with 17+ words: row by row, two output tiles, 4-row remainder
    (2, 70, 4096),
    (3, 257, 1025),
]


def _pm1(rng, shape):
    return rng.choice(np.array([-1, 1], dtype=np.int8), size=shape)


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_gemm_fast_equals_reference_equals_matmul(m, n, k, sweep):
    rng = np.random.default_rng(m * n + k)
    xa, xb = _pm1(rng, (m, k)), _pm1(rng, (n, k))
    a, b = pack_signs(xa), pack_signs(xb)
    want = (xa.astype(np.float64) @ xb.astype(np.float64).T).astype(np.int32)
    ref = reference.xnor_gemm(a, b, k)
    assert ref.dtype == np.int32 and np.array_equal(ref, want)
    for threads in THREADS:
        assert np.array_equal(kernels.xnor_gemm(a, b, k, threads=threads), want)


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_scores_kernel_rounds_as_numpy(m, n, k):
    """The output layer's fused kernel gives numpy's float32 ``y * scale + shift`` bit for bit."""
    rng = np.random.default_rng(m + n + k)
    a, b = pack_signs(_pm1(rng, (m, k))), pack_signs(_pm1(rng, (n, k)))
    scale = rng.normal(size=n).astype(np.float32)
    shift = rng.normal(size=n).astype(np.float32)
    want = np.multiply(reference.xnor_gemm(a, b, k), scale, dtype=np.float32) + shift
    for threads in THREADS:
        with kernels._with_threads(threads):
            got = kernels.xnor_scores_runner(m, b, k, scale, shift, threads=threads)(a)
        assert got.dtype == np.float32 and np.array_equal(got, want), threads


@pytest.mark.parametrize("c", [1, 5, 32, 33, 63])
def test_compact_pixels_puts_the_real_bits_end_to_end(c):
    """A flatten's pixel words with c real (low) bits each become one row of bits, in order."""
    rng = np.random.default_rng(c)
    words = 9
    x = rng.integers(0, 2**63, size=(7, words), dtype=np.uint64)
    got = kernels.compact_pixels_runner(7, words, c)(x)
    bits = np.unpackbits(x.view(np.uint8).reshape(7, words, 8), axis=2, bitorder="little")
    real = bits[:, :, :c].reshape(7, -1)  # pixel-major, each pixel's channels in order
    want = np.packbits(real, axis=1, bitorder="little")
    want = np.pad(want, ((0, 0), (0, 8 * got.shape[1] - want.shape[1]))).view(np.uint64)
    assert got.shape == (7, -(-words * c // 64)) and np.array_equal(got, want)
    with pytest.raises(ValueError, match="bits per word"):
        kernels.compact_pixels_runner(7, words, 64)


@pytest.mark.parametrize("m,n,k", SHAPES)
def test_fused_threshold(m, n, k, sweep):
    rng = np.random.default_rng(k)
    a, b = pack_signs(_pm1(rng, (m, k))), pack_signs(_pm1(rng, (n, k)))
    y = reference.xnor_gemm(a, b, k)
    t = rng.integers(-k - 1, k + 2, size=n).astype(np.int32)
    t[: n // 4] = THRESH_MIN
    t[n // 4 : n // 2] = THRESH_MAX
    flip = rng.random(n) < 0.5
    want_bits = np.where(flip, y <= t, y >= t)
    want = pack_signs(np.where(want_bits, 1, -1))
    assert np.array_equal(reference.threshold_pack(y, t, flip), want)
    assert np.array_equal(kernels.threshold_pack(y, t, flip), want)
    assert np.array_equal(reference.xnor_gemm_threshold(a, b, k, t, flip), want)
    assert np.array_equal(kernels.xnor_gemm_threshold(a, b, k, t, flip), want)
    assert np.array_equal(kernels.xnor_gemm_threshold(a, b, k, t, flip, threads=1), want)


def test_threshold_flip_semantics():
    y = np.array([[-3, -1, 0, 1, 3]], dtype=np.int32).T.repeat(2, axis=1)  # (5, 2)
    t = np.array([0, 0], dtype=np.int32)
    flip = np.array([False, True])
    bits = reference.threshold_bits(y, t, flip)
    assert bits[:, 0].tolist() == [False, False, True, True, True]  # y >= 0
    assert bits[:, 1].tolist() == [True, True, True, False, False]  # y <= 0 (BN scale < 0)
    packed = kernels.threshold_pack(y, t, flip)
    assert packed[:, 0].tolist() == [2, 2, 3, 1, 1]


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (5, 7, 9), (17, 13, 784), (66, 200, 130)])
def test_bitplane_first_layer_equals_integer_matmul(m, n, k):
    rng = np.random.default_rng(k)
    u = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    u[0, : min(k, 5)] = 255
    if m > 1:
        u[1] = 0
    w = _pm1(rng, (n, k))
    want = u.astype(np.int64) @ w.astype(np.int64).T
    b = pack_signs(w)
    planes_ref = reference.bitplanes(u)
    planes = kernels.bitplanes(u)
    assert planes.shape == (m, 8, (k + 63) // 64)
    assert np.array_equal(planes, planes_ref)
    assert np.array_equal(reference.bitplane_gemm(planes, b), want)
    assert np.array_equal(kernels.bitplane_gemm(planes, b), want)


def test_popcount64_and_errors():
    assert kernels.popcount64(np.uint64(2**64 - 1)) == 64
    assert kernels.popcount64(np.uint64(0b1011)) == 3
    a = np.zeros((2, 2), np.uint64)
    with pytest.raises(ValueError, match="word counts"):
        kernels.xnor_gemm(a, np.zeros((2, 3), np.uint64), 64)
    with pytest.raises(ValueError, match="uint64"):
        kernels.xnor_gemm(a.astype(np.int64), a, 64)
    with pytest.raises(ValueError):
        kernels.xnor_gemm_threshold(a, a, 64, np.zeros(3), np.zeros(3, bool))


@pytest.mark.parametrize("m,n,k", [(3, 5, 9), (130, 70, 27), (66, 200, 130), (9, 64, 64)])
def test_bitplane_fused_threshold(m, n, k):
    rng = np.random.default_rng(n)
    u = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    w = _pm1(rng, (n, k))
    y = u.astype(np.int64) @ w.astype(np.int64).T
    t = rng.integers(-2000, 2000, size=n)
    t[0] = THRESH_MIN
    flip = rng.random(n) < 0.5
    want = pack_signs(np.where(np.where(flip, y <= t, y >= t), 1, -1))
    planes = kernels.bitplanes(u)
    b = pack_signs(w)
    assert np.array_equal(reference.bitplane_gemm_threshold(planes, b, t, flip), want)
    assert np.array_equal(kernels.bitplane_gemm_threshold(planes, b, t, flip), want)
    assert np.array_equal(kernels.bitplane_gemm(planes, b), y)


#: The AVX2-host checks below pretend to be an AVX2 host; on one (no AVX-512) the rest of the
#: suite already runs every kernel compiled for the real host.
ON_AVX2_HOST = pytest.mark.skipif(not host_has("avx512f"),
                                  reason="the host is an AVX2 host: the suite runs its kernels")
AVX2_FEATURES = "+64bit,+avx,+avx2,+popcnt,+sse,+sse2,+sse3,+ssse3,+sse4.1,+sse4.2,+fma,+cx16,+cmov"
_AVX2_SCRIPT = """
import numpy as np
from xnorlab.packed import kernels, reference
from xnorlab.packed.bits import pack_signs
kernels.nibble_sweeps = lambda: True  # what an AVX2 host without BITALG runs
rng = np.random.default_rng(0)
xa, xb = rng.choice([-1, 1], size=(9, 200)), rng.choice([-1, 1], size=(70, 200))  # nibbles
assert np.array_equal(kernels.xnor_gemm(pack_signs(xa), pack_signs(xb), 200), xa @ xb.T)
xa = xa[:1]  # batch 1: XOR columns
assert np.array_equal(kernels.xnor_gemm(pack_signs(xa), pack_signs(xb), 200), xa @ xb.T)
wa, wb = rng.choice([-1, 1], size=(9, 1100)), rng.choice([-1, 1], size=(13, 1100))  # tiled
assert np.array_equal(kernels.xnor_gemm(pack_signs(wa), pack_signs(wb), 1100), wa @ wb.T)
ra = wa[:1]  # batch 1: row by row
assert np.array_equal(kernels.xnor_gemm(pack_signs(ra), pack_signs(wb), 1100), ra @ wb.T)
u = rng.integers(0, 256, size=(1, 200), dtype=np.uint8)  # batch 1: bit planes by columns
wts = reference.int8_weights(pack_signs(xb), 200)
assert np.array_equal(kernels.uint8_gemm(u, wts, tables=False), u.astype(np.int64) @ xb.T)
g = ((1, 1), (1, 1, 1, 1))
for c in (16, 40):  # byte planes; word taps
    x = pack_signs(rng.choice([-1, 1], size=(3, 6, 7, c)))
    w = pack_signs(rng.choice([-1, 1], size=(5, 3, 3, c))).reshape(5, -1)
    taps = reference.conv_taps(w, c, (3, 3), False)
    want = reference.binary_conv2d(x, taps, *g)
    assert np.array_equal(kernels.binary_conv2d(x, taps, *g), want)
# (the XOR + popcount byte sweep runs on AVX-512 BITALG hosts only)
for name in ("_xnor_gemm_nb", "_xnor_columns_nb", "_xnor_rows_nb", "_bitplane_columns_nb",
             "_binary_conv_nb", "_bit_tap_sweep", "_pixel_conv_nb", "_nibble_columns_nb"):
    asm = "\\n".join(getattr(kernels, name).inspect_asm().values())
    assert asm and "zmm" not in asm and "vpopcntq" not in asm, name + ": AVX-512 for AVX2"
print("ok")
"""


@pytest.mark.slow  # compiles the kernels afresh in a subprocess
@ON_AVX2_HOST
def test_compiles_and_is_exact_for_an_avx2_host(tmp_path):
    """numba JITs for the host CPU; pretend the host is an AVX2 machine (no VPOPCNTDQ)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import xnorlab

    env = dict(os.environ)
    env.update(
        NUMBA_CPU_NAME="haswell",
        NUMBA_CPU_FEATURES=AVX2_FEATURES,
        NUMBA_CACHE_DIR=str(tmp_path / "numba"),
        PYTHONPATH=str(Path(xnorlab.__file__).parents[1]),
    )
    r = subprocess.run(
        [sys.executable, "-c", _AVX2_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]
