"""The fast sign and STE mask give the same bits as the formulas they replaced."""

from __future__ import annotations

import torch

from xnorlab.quant.binarizers import _ste_mask, sign


def special_values() -> torch.Tensor:
    tiny = torch.finfo(torch.float32).tiny
    edge = [0.0, -0.0, tiny, -tiny, tiny / 4, -tiny / 4, 1.0, -1.0, 1.0000001, -1.0000001,
            float("inf"), float("-inf"), 3e38, -3e38]
    return torch.cat([torch.tensor(edge), torch.randn(4096) * 2])


def test_sign_matches_where_formula_bitwise():
    x = special_values()
    one = torch.ones(())
    old = torch.where(x >= 0, one, -one)
    new = sign(x)
    assert new.dtype == x.dtype and torch.equal(new, old)
    assert torch.equal(torch.signbit(new), torch.signbit(old))
    assert sign(torch.tensor([-0.0])).item() == 1.0  # the project's sign(0) = +1, -0 included


def test_ste_mask_matches_float_mask_bitwise_including_signed_zeros():
    x = special_values()
    g = torch.randn(x.shape)
    old = g * (x.abs() <= 1).to(g.dtype)
    new = _ste_mask(x, g)
    assert torch.equal(new, old) and torch.equal(torch.signbit(new), torch.signbit(old))
    assert (new == 0).any() and (torch.signbit(new) & (new == 0)).any()  # -0.0 kept
