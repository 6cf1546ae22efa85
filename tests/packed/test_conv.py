"""Direct convolution kernels (tap sweeps) vs the NumPy tap reference vs im2col + GEMM."""

import numba
import numpy as np
import pytest

from xnorlab.packed import kernels, nibbles, reference
from xnorlab.packed.bits import pack_signs, valid_mask
from xnorlab.packed.layers import THRESH_MAX, THRESH_MIN, im2col_bits, im2col_uint8

THREADS = [t for t in (1, 2) if t <= numba.config.NUMBA_NUM_THREADS]

# (C in, C out, (H, W), kernel, stride, padding (top, bottom, left, right))
CASES = [
    (16, 16, (7, 9), (3, 3), (1, 1), (1, 1, 1, 1)),  # grouped: 3 pixels per word
    (32, 20, (6, 6), (3, 3), (1, 1), (1, 1, 1, 1)),  # grouped: 2 + 1 pixels
    (3, 5, (7, 8), (3, 3), (1, 1), (1, 1, 1, 1)),
    (1, 4, (5, 5), (3, 3), (1, 1), (1, 1, 1, 1)),
    (70, 9, (6, 7), (3, 3), (1, 1), (1, 1, 1, 1)),  # 2 words per pixel, padding bits
    (64, 70, (5, 5), (3, 3), (2, 2), (1, 1, 1, 1)),  # stride 2, 2 output words
    (8, 130, (6, 5), (3, 3), (1, 1), (1, 1, 1, 1)),  # 3 output words
    (2, 3, (8, 8), (2, 2), (1, 1), (0, 0, 0, 0)),
    (16, 8, (9, 9), (5, 5), (2, 1), (2, 1, 0, 2)),  # 5x5 (4 + 1 pixel groups), asymmetric
    (33, 6, (4, 11), (1, 3), (1, 1), (0, 0, 1, 1)),
]


@pytest.mark.parametrize("cin,kernel", [(16, 3), (32, 3), (2, 2)])
def test_byte_plane_convs_take_the_chosen_sweep(cin, kernel, sweep):
    w = pack_signs(np.ones((4, kernel, kernel, cin))).reshape(4, -1)
    taps = reference.conv_taps(w, cin, (kernel, kernel), uint8_input=False)
    plane, toff, bw, _, _, tables = kernels._pixel_taps(taps, 8)
    assert (tables is not None) == (sweep == "nibble")
    if tables is not None:  # taps padded to whole passes, the tables of the padding zero
        assert len(plane) == len(toff) == tables.shape[1] * nibbles.NIBBLE_TAPS >= len(bw)


def _pm1(rng, shape):
    return rng.choice(np.array([-1, 1], dtype=np.int8), size=shape)


def _thresholds(rng, n, bound):
    t = rng.integers(-bound - 1, bound + 2, size=n).astype(np.int32)
    t[0] = THRESH_MIN
    if n > 1:
        t[1] = THRESH_MAX
    return t, rng.random(n) < 0.5


def _bits(y, t, flip, pool):
    n, ho, wo, co = y.shape
    bits = reference.threshold_pack(y.reshape(-1, co), t, flip).reshape(n, ho, wo, -1)
    return reference.or_pool(bits, pool, pool, (0, 0))


@pytest.mark.parametrize("cin,cout,hw,k,s,p", CASES)
@pytest.mark.parametrize("batch", [1, 13])
def test_binary_conv_kernel_equals_reference_and_im2col(cin, cout, hw, k, s, p, batch, sweep):
    rng = np.random.default_rng(cin * cout + batch)
    x = pack_signs(_pm1(rng, (batch, *hw, cin)))  # NHWC packed
    w = pack_signs(_pm1(rng, (cout, *k, cin))).reshape(cout, -1)
    taps = reference.conv_taps(w, cin, k, uint8_input=False)
    patches, ho, wo = im2col_bits(x, k, s, p, valid_mask(cin))
    want = reference.xnor_gemm(patches, w, taps.fan_in).reshape(batch, ho, wo, cout)
    assert np.array_equal(reference.binary_conv2d(x, taps, s, p), want)
    t, flip = _thresholds(rng, cout, taps.fan_in)
    for threads in THREADS:
        got = kernels.binary_conv2d(x, taps, s, p, threads=threads)
        assert got.dtype == np.int32 and np.array_equal(got, want)
        for pool in ((1, 1), (2, 2), (3, 2)):
            if ho < pool[0] or wo < pool[1]:
                continue
            bits = _bits(want, t, flip, pool)
            assert np.array_equal(reference.binary_conv2d(x, taps, s, p, t, flip, pool), bits)
            got = kernels.binary_conv2d(x, taps, s, p, t, flip, pool, threads=threads)
            assert np.array_equal(got, bits), (threads, pool)


@pytest.mark.parametrize("cin,cout,hw,k,s,p", [c for c in CASES if c[0] <= 16])
@pytest.mark.parametrize("batch", [1, 13])
def test_uint8_conv_kernel_equals_reference_and_integer_im2col(cin, cout, hw, k, s, p, batch):
    rng = np.random.default_rng(cin + cout + batch)
    u = rng.integers(0, 256, size=(batch, cin, *hw), dtype=np.uint8)
    u[0, :, 0] = 255
    w_pm1 = _pm1(rng, (cout, *k, cin)).reshape(cout, -1)  # (kh, kw, c) order
    taps = reference.conv_taps(pack_signs(w_pm1), cin, k, uint8_input=True)
    patches, ho, wo = im2col_uint8(u, k, s, p)
    want = (patches.astype(np.int64) @ w_pm1.T.astype(np.int64)).reshape(batch, ho, wo, cout)
    assert np.array_equal(reference.uint8_conv2d(u, taps, s, p), want)
    t, flip = _thresholds(rng, cout, 255 * taps.fan_in)
    for threads in THREADS:
        assert np.array_equal(kernels.uint8_conv2d(u, taps, s, p, threads=threads), want)
        for pool in ((1, 1), (2, 2)):
            bits = _bits(want, t, flip, pool)
            assert np.array_equal(reference.uint8_conv2d(u, taps, s, p, t, flip, pool), bits)
            got = kernels.uint8_conv2d(u, taps, s, p, t, flip, pool, threads=threads)
            assert np.array_equal(got, bits), (threads, pool)


@pytest.mark.parametrize(
    "cin,kernel,words",
    [(1, 3, 3), (16, 3, 3), (21, 3, 3), (32, 3, 6), (33, 3, 9), (64, 3, 9), (70, 3, 18),
     (16, 2, 2), (16, 5, 10)],
)
def test_narrow_channels_share_words(cin, kernel, words):
    """Channels <= 32 pack 2-4 pixels of a kernel row into one word (3x3: 3 words for 16
    channels instead of 9); tap lists are padded with zero taps to whole passes."""
    w = pack_signs(np.ones((4, kernel, kernel, cin))).reshape(4, -1)
    taps = reference.conv_taps(w, cin, (kernel, kernel), uint8_input=False)
    real = taps.plane >= 0
    assert real.sum() == words and len(real) % reference.TAPS_PER_PASS == 0
    assert not taps.weight[~real].any()
    # every weight bit is one kernel bit: popcount of all tap words = fan-in
    assert np.bitwise_count(taps.weight).sum(axis=0).tolist() == [taps.fan_in] * 4


@pytest.mark.parametrize(
    "cin,kernel,sums",
    [(1, 3, np.uint8), (8, 3, np.uint8), (8, 5, np.uint8), (8, 7, np.uint16), (9, 3, np.uint8),
     (16, 3, np.uint8), (17, 3, np.uint8), (25, 3, np.uint16), (32, 3, np.uint16), (33, 3, None),
     (64, 3, None), (70, 3, None)],
)
def test_narrow_channels_sweep_byte_planes(cin, kernel, sums):
    """C <= 32: the binary conv sweeps byte planes, its popcount sums in uint8 while at most
    30 byte taps add up (8 bits each), else in uint16; ``pixels`` is each kernel pixel's word."""
    rng = np.random.default_rng(cin + kernel)
    w = pack_signs(_pm1(rng, (4, kernel, kernel, cin))).reshape(4, -1)
    taps = reference.conv_taps(w, cin, (kernel, kernel), uint8_input=False)
    assert kernels.pixel_sums(taps) is sums
    if cin <= 64:
        assert np.array_equal(taps.pixels, w.T)


def test_conv_kernel_input_errors():
    w = pack_signs(np.ones((2, 3, 3, 4))).reshape(2, -1)
    taps = reference.conv_taps(w, 4, (3, 3), uint8_input=False)
    x = np.zeros((1, 5, 5, 1), np.uint64)
    with pytest.raises(ValueError, match="uint64"):
        kernels.binary_conv2d(x.astype(np.int64), taps, (1, 1), (1, 1, 1, 1))
    with pytest.raises(ValueError, match="words per pixel"):
        kernels.binary_conv2d(np.zeros((1, 5, 5, 2), np.uint64), taps, (1, 1), (1, 1, 1, 1))
    with pytest.raises(ValueError, match="thresh"):
        kernels.binary_conv2d(x, taps, (1, 1), (1, 1, 1, 1), np.zeros(3), np.zeros(3, bool))
    with pytest.raises(ValueError, match="larger than"):
        kernels.binary_conv2d(np.zeros((1, 1, 1, 1), np.uint64), taps, (1, 1), (0, 0, 0, 0))
    utaps = reference.conv_taps(pack_signs(np.ones((2, 9))), 1, (3, 3), uint8_input=True)
    with pytest.raises(ValueError, match="channels"):
        kernels.uint8_conv2d(np.zeros((1, 2, 5, 5), np.uint8), utaps, (1, 1), (1, 1, 1, 1))


@pytest.mark.parametrize("cin", [14, 15])  # 255 * 9 * 14 = 32130 fits int16 lanes; 15 does not
def test_uint8_conv_at_the_int16_limit(cin):
    """All-255 pixels and all-equal weights reach |y| = 255 K, the largest pre-activation; the
    int16 sweep (255 K < 2^15 - 1) and the int32 one give the same integers and bits."""
    rng = np.random.default_rng(cin)
    u = np.full((2, cin, 5, 6), 255, np.uint8)
    u[1] = rng.integers(0, 256, size=u.shape[1:], dtype=np.uint8)
    w_pm1 = _pm1(rng, (6, 3, 3, cin)).reshape(6, -1)
    w_pm1[0], w_pm1[1] = 1, -1
    taps = reference.conv_taps(pack_signs(w_pm1), cin, (3, 3), uint8_input=True)
    patches, ho, wo = im2col_uint8(u, (3, 3), (1, 1), (0, 0, 0, 0))
    want = (patches.astype(np.int64) @ w_pm1.T.astype(np.int64)).reshape(2, ho, wo, 6)
    assert want.max() == 255 * taps.fan_in and want.min() == -255 * taps.fan_in
    got = kernels.uint8_conv2d(u, taps, (1, 1), (0, 0, 0, 0))
    assert np.array_equal(got, want)
    k = 255 * taps.fan_in
    t = np.array([k, -k, THRESH_MIN, THRESH_MAX, k + 1, -k - 1], np.int32)
    for flip in (np.zeros(6, bool), np.ones(6, bool), rng.random(6) < 0.5):
        bits = _bits(want, t, flip, (1, 1))
        assert np.array_equal(kernels.uint8_conv2d(u, taps, (1, 1), (0, 0, 0, 0), t, flip), bits)


@pytest.mark.parametrize(
    "hw,padding,hp_wp",
    [((7, 7), (1, 1, 1, 1), (8, 8)),  # shared rows and columns: 64 positions, not 81
     ((14, 14), (1, 1, 1, 1), (15, 16)),  # a 15-wide row is rounded up to an even 16
     ((9, 9), (2, 1, 0, 2), (11, 12)),  # right padding wider than left: columns not shared
     ((5, 5), (0, 2, 1, 1), (7, 6))],  # bottom padding wider than top: rows not shared
)
def test_conv_plan_shares_padding_between_rows_and_samples(hw, padding, hp_wp):
    """A row's right padding is the next row's left padding and a sample's bottom padding the
    next sample's top, where no wider: the sweep crosses fewer padding positions (the conv
    tests above check every such geometry against the reference)."""
    w = pack_signs(np.ones((4, 3, 3, 8))).reshape(4, -1)
    taps = reference.conv_taps(w, 8, (3, 3), uint8_input=False)
    geom, _, _ = kernels._conv_plan(64, hw, taps, (1, 1), padding, (1, 1), 1)
    assert (geom.hp, geom.wp) == hp_wp
