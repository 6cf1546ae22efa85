import numpy as np
import pytest
import torch

from xnorlab.quant.binarizers import sign
from xnorlab.quant.bitmask import (
    masked_grad,
    pack_positive,
    pack_unit_mask,
    sample_pm1,
    sign_bits,
    unpack_pm1,
)

SPECIALS = [0.0, -0.0, 1.0, -1.0, 1.0000001, -1.0000001, float("nan"), float("inf"),
            -float("inf"), 1e-45, -1e-45]


def values(n: int) -> torch.Tensor:
    x = torch.randn(n, generator=torch.Generator().manual_seed(n)) * 1.5
    x[: min(n, len(SPECIALS))] = torch.tensor(SPECIALS[:n])
    return x


@pytest.mark.parametrize("n", [1, 7, 8, 9, 1001, 4096])
def test_packs_like_numpy_packbits(n):
    x = values(n)
    assert torch.equal(pack_positive(x), torch.from_numpy(np.packbits((x > 0).numpy())))
    assert torch.equal(pack_unit_mask(x),
                       torch.from_numpy(np.packbits((x.abs() <= 1).numpy())))


@pytest.mark.parametrize("n", [1, 7, 8, 9, 1001, 4096])
def test_sign_bits_gives_sign_its_bits_the_mask_and_the_count_outside_in_one_pass(n):
    x = values(n).reshape(1, n)
    x[0, -1] = -float("nan")  # a NaN's sign bit decides its sign, as in torch.copysign
    signs, bits, mask, outside = sign_bits(x)
    expect = sign(x)
    assert signs.shape == x.shape and signs.dtype == torch.float32
    assert torch.equal(signs.view(torch.int32), expect.view(torch.int32))
    assert torch.equal(bits, pack_positive(expect))
    assert torch.equal(mask, pack_unit_mask(x))
    assert outside == int((~(x.abs() <= 1)).sum())


def test_unpack_pm1_round_trips_signs_in_shape():
    s = torch.where(values(3 * 67) > 0, 1.0, -1.0).reshape(3, 67)
    out = unpack_pm1(pack_positive(s), s.shape)
    assert out.dtype == torch.float32 and out.shape == s.shape and torch.equal(out, s)


def test_masked_grad_has_the_bits_of_torchs_product():
    x = values(1003).reshape(17, 59)
    g = values(1003).flip(0).reshape(17, 59) * 1e-3
    g[0, :4] = torch.tensor([-1.0, float("nan"), -float("inf"), 2.0])
    expect = g * (x.abs() <= 1)
    got = masked_grad(g, pack_unit_mask(x))
    # Bit patterns, so -0.0 (a masked negative gradient) and NaN compare too.
    assert torch.equal(got.view(torch.int32), expect.view(torch.int32))


def test_non_contiguous_input_packs_its_values():
    x = values(64).reshape(8, 8).t()
    assert torch.equal(pack_positive(x), pack_positive(x.contiguous()))


def test_rejects_other_dtypes():
    with pytest.raises(TypeError, match="float32"):
        pack_positive(torch.ones(4, dtype=torch.float64))


def test_sample_pm1_is_torchs_where_over_hard_sigmoid_bitwise():
    from xnorlab.quant.binarizers import hard_sigmoid

    x = torch.cat([values(4099), torch.tensor([-1.0, 1.0, -3.0, 3.0, float("nan")])])
    u = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    u[:3] = torch.tensor([0.0, 0.5, 0.9999999])
    x[:3] = torch.tensor([-1.0, 0.0, 1.0])  # p = 0, 0.5, 1: the boundaries of u < p
    one = torch.ones(())
    expect = torch.where(u < hard_sigmoid(x), one, -one)
    assert torch.equal(sample_pm1(x.reshape(1, -1), u.reshape(1, -1)), expect.reshape(1, -1))
