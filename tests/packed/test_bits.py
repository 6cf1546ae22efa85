import numpy as np
import pytest

from xnorlab.packed.bits import (
    n_words,
    pack_bits,
    pack_signs,
    popcount_rows,
    unpack_bits,
    unpack_signs,
    valid_mask,
)


@pytest.mark.parametrize("k", [1, 7, 63, 64, 65, 128, 130, 1000])
def test_roundtrip_signs(k):
    rng = np.random.default_rng(k)
    x = rng.choice(np.array([-1, 1], dtype=np.int8), size=(3, 5, k))
    p = pack_signs(x)
    assert p.dtype == np.uint64 and p.shape == (3, 5, n_words(k))
    assert np.array_equal(unpack_signs(p, k), x)
    assert np.array_equal(unpack_bits(p, k), (x > 0).astype(np.uint8))
    # padding bits are 0
    if k % 64:
        assert not (p[..., -1] >> np.uint64(k % 64)).any()
    assert np.array_equal(popcount_rows(p), (x > 0).sum(-1))


def test_lsb_first_layout_and_sign_zero():
    x = -np.ones(130, dtype=np.float32)
    x[0] = 1.0
    x[64] = 0.0  # sign(0) = +1
    x[129] = 2.5
    p = pack_signs(x)
    assert p.tolist() == [1, 1, 2]
    assert np.array_equal(pack_bits(x > 0), pack_signs(np.where(x > 0, 1, -1)))
    assert pack_bits(np.array([True] + [False] * 7)).view(np.uint8)[0] == 1  # little-endian


def test_bool_and_mask():
    b = np.zeros((2, 70), dtype=bool)
    b[1, 69] = True
    assert np.array_equal(pack_signs(b), pack_bits(b))
    assert pack_bits(b)[1].tolist() == [0, 1 << 5]
    assert valid_mask(70).tolist() == [2**64 - 1, 2**6 - 1]


def test_errors():
    with pytest.raises(ValueError):
        unpack_bits(np.zeros((2, 2), np.uint64), 200)
    with pytest.raises(ValueError):
        unpack_bits(np.zeros((2, 2), np.int64), 100)
    with pytest.raises(ValueError):
        pack_signs(np.array([np.nan, 1.0]))
