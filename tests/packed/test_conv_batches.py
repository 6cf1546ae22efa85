"""The suite CNN's layer shapes at batch 1 / 63 / 64 and 1 / 2 threads: the per-thread sample
runs (uneven at 63), the lane thresholds and the lane-domain pooling stay exact."""

import numba
import numpy as np
import pytest

from xnorlab.packed import kernels, reference
from xnorlab.packed.bits import pack_signs

THREADS = [t for t in (1, 2) if t <= numba.config.NUMBA_NUM_THREADS]
PAD = (1, 1, 1, 1)


def _thresholds(rng, n, bound):
    t = rng.integers(-bound, bound + 1, size=n).astype(np.int32)
    t[0] = np.iinfo(np.int32).min  # sentinels: always / never, both senses
    t[-1] = np.iinfo(np.int32).max
    return t, rng.random(n) < 0.5


@pytest.mark.parametrize("batch", [1, 63, 64])
@pytest.mark.parametrize("cin,cout,hw,pool", [
    (8, 8, (28, 28), (2, 2)),  # uint8 pixel lanes, one lane row
    (8, 16, (14, 14), (1, 1)),  # uint8 lanes, two lane rows in one word
    (16, 32, (7, 7), (2, 2)),  # uint16 lanes, floor pooling of an odd size
    (32, 32, (7, 7), (2, 2)),  # uint32 lanes, the suite's 32->32 + pool
    (33, 32, (7, 7), (1, 1)),  # word taps (uint64 lanes)
    (8, 70, (6, 5), (2, 2)),  # two output words
])
def test_binary_conv_batches_and_threads(cin, cout, hw, pool, batch):
    rng = np.random.default_rng(cin * cout + batch)
    x = pack_signs(rng.choice([-1, 1], size=(batch, *hw, cin)))
    w = pack_signs(rng.choice([-1, 1], size=(cout, 3, 3, cin))).reshape(cout, -1)
    taps = reference.conv_taps(w, cin, (3, 3), uint8_input=False)
    t, flip = _thresholds(rng, cout, taps.fan_in)
    want_y = reference.binary_conv2d(x, taps, (1, 1), PAD)
    want = reference.binary_conv2d(x, taps, (1, 1), PAD, t, flip, pool)
    for threads in THREADS:
        got_y = kernels.binary_conv2d(x, taps, (1, 1), PAD, threads=threads)
        assert np.array_equal(got_y, want_y), threads
        got = kernels.binary_conv2d(x, taps, (1, 1), PAD, t, flip, pool, threads=threads)
        assert np.array_equal(got, want), threads


@pytest.mark.parametrize("batch", [1, 63, 64])
@pytest.mark.parametrize("cin,cout,hw,pool,pad", [
    (1, 8, (28, 28), (1, 1), PAD),  # the suite's first layer: int16 sums, uint16 lanes
    (1, 8, (28, 28), (2, 2), PAD),
    (1, 20, (9, 11), (3, 2), (0, 2, 1, 0)),  # two lane rows, asymmetric padding
    (16, 4, (6, 6), (2, 2), PAD),  # 255 * 144 > 2^15: int32 sums, uint32 lanes
])
def test_uint8_conv_batches_and_threads(cin, cout, hw, pool, pad, batch):
    rng = np.random.default_rng(cin + cout + batch)
    u = rng.integers(0, 256, size=(batch, cin, *hw), dtype=np.uint8)
    u[0, :, :2] = 255
    w = pack_signs(rng.choice([-1, 1], size=(cout, 3 * 3 * cin)))
    taps = reference.conv_taps(w, cin, (3, 3), uint8_input=True)
    want_y = reference.uint8_conv2d(u, taps, (1, 1), pad)
    t, flip = _thresholds(rng, cout, 255 * taps.fan_in)
    t[1:3] = want_y[0, 0, 0, 1:3]  # thresholds met exactly: y == t decides both senses
    want = reference.uint8_conv2d(u, taps, (1, 1), pad, t, flip, pool)
    for threads in THREADS:
        assert np.array_equal(kernels.uint8_conv2d(u, taps, (1, 1), pad, threads=threads),
                              want_y)
        got = kernels.uint8_conv2d(u, taps, (1, 1), pad, t, flip, pool, threads=threads)
        assert np.array_equal(got, want), threads


@pytest.mark.parametrize("m", [1, 63, 64, 130])
@pytest.mark.parametrize("n", [10, 256, 300])
def test_xnor_gemm_tiles_split_for_threads(m, n):
    """Small GEMMs are cut into more row tiles so both threads get work; same integers."""
    rng = np.random.default_rng(m + n)
    a = pack_signs(rng.choice([-1, 1], size=(m, 288)))
    b = pack_signs(rng.choice([-1, 1], size=(n, 288)))
    want = reference.xnor_gemm(a, b, 288)
    t, flip = _thresholds(rng, n, 288)
    bits = reference.xnor_gemm_threshold(a, b, 288, t, flip)
    for threads in THREADS:
        assert np.array_equal(kernels.xnor_gemm(a, b, 288, threads=threads), want)
        assert np.array_equal(kernels.xnor_gemm_threshold(a, b, 288, t, flip, threads=threads),
                              bits)
