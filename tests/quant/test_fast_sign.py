"""The fast sign and STE mask give the same bits as the formulas they replaced."""

from __future__ import annotations

import pytest
import torch

from xnorlab.quant.binarizers import _ste_mask, sign

pytestmark = pytest.mark.slow  # trains models


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


def test_weight_sign_passes_the_same_gradient_inside_and_outside_the_clip_range():
    from xnorlab.quant.binarizers import binarize_det

    for scale in (0.5, 3.0):  # inside [-1, 1]: mask skipped; outside: the standard mask
        w = (torch.randn(64, 32) * scale).requires_grad_()
        g = torch.randn(64, 32)
        binarize_det(w).backward(g)
        assert torch.equal(w.grad, g * (w.detach().abs() <= 1).to(g.dtype))
        assert torch.equal(torch.signbit(w.grad), torch.signbit(g * (w.detach().abs() <= 1)))


@pytest.mark.parametrize(("model", "quant"), [
    ("mlp", "bc_det"), ("mlp", "bnn"), ("mlp", "xnor"), ("cnn", "bnn"), ("cnn", "bnn_stoch")])
def test_training_with_fast_ops_matches_the_old_ops_bitwise(model, quant):
    # "Before" = the formulas this project used until the fast ones (bench.legacy_ops).
    from tests.quant.test_lean import MODELS, train_steps

    from xnorlab.bench.train_bench import legacy_ops

    _, after, _ = train_steps(MODELS[model], quant, lean_on=True)
    with legacy_ops():
        _, before, _ = train_steps(MODELS[model], quant, lean_on=False)
    for a, b in zip(after, before, strict=True):
        assert torch.equal(a, b)
