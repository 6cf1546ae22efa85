"""Binarization functions: sign convention, clipped STE, stochastic rule, XNOR scale."""

import pytest
import torch

from xnorlab.quant import (
    StochasticSign,
    binarize_det,
    binarize_stoch,
    channel_scale,
    get_quantizer,
    hard_sigmoid,
    sign,
    xnor_binarize_weight,
)


def test_sign_of_zero_is_plus_one():
    x = torch.tensor([-2.0, -1e-7, -0.0, 0.0, 1e-7, 3.0])
    expected = torch.tensor([-1.0, -1.0, 1.0, 1.0, 1.0, 1.0])
    assert torch.equal(sign(x), expected)
    assert torch.equal(binarize_det(x), expected)
    assert torch.equal(get_quantizer("ste_sign")(x), expected)


@pytest.mark.parametrize("fn", [binarize_det, binarize_stoch], ids=["det", "stoch"])
def test_ste_gradient_is_clipped(fn):
    x = torch.linspace(-2, 2, 41, requires_grad=True)  # contains -1 and +1 exactly
    g = torch.arange(41, dtype=torch.float32) + 1.0
    fn(x).backward(g)
    inside = x.detach().abs() <= 1
    assert torch.equal(x.grad[inside], g[inside])
    assert torch.all(x.grad[~inside] == 0)
    assert inside.sum() == 21  # boundaries |x| = 1 pass the gradient


def test_binarized_values_are_pm1_and_dtype_kept():
    x = torch.randn(1000, dtype=torch.float64)
    for b in (binarize_det(x), binarize_stoch(x)):
        assert b.dtype == torch.float64
        assert set(b.unique().tolist()) <= {-1.0, 1.0}


def test_stochastic_mean_matches_hard_sigmoid():
    gen = torch.Generator().manual_seed(1234)
    x = torch.tensor([-3.0, -1.0, -0.6, -0.1, 0.0, 0.3, 0.9, 1.0, 2.0])
    samples = binarize_stoch(x.expand(40000, -1), generator=gen)
    p_plus = (samples == 1).float().mean(dim=0)
    assert torch.allclose(p_plus, hard_sigmoid(x), atol=0.01)
    # Saturated inputs are deterministic.
    assert torch.all(samples[:, x <= -1] == -1) and torch.all(samples[:, x >= 1] == 1)


def test_stochastic_sign_is_deterministic_in_eval_unless_flagged():
    torch.manual_seed(0)
    x = torch.randn(5000) * 0.5
    q = StochasticSign()
    assert not torch.equal(q(x), q(x))  # training: samples differ
    q.eval()
    assert torch.equal(q(x), sign(x)) and torch.equal(q(x), q(x))
    q_flag = get_quantizer("stoch_sign", stochastic_eval=True).eval()
    assert not torch.equal(q_flag(x), q_flag(x))


def test_xnor_alpha_is_mean_abs_per_output_channel():
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3) * torch.tensor([0.1, 1.0, 2.0, 5.0]).view(4, 1, 1, 1)
    q = xnor_binarize_weight(w)
    for c in range(4):
        alpha = w[c].abs().mean()
        assert torch.allclose(q[c], alpha * sign(w[c]))
        assert torch.allclose(q[c].abs().unique(), alpha.reshape(1))
    assert channel_scale(w).shape == (4, 1, 1, 1)
    assert channel_scale(torch.randn(5, 7)).shape == (5, 1)


def test_xnor_gradient_flows_through_alpha_unless_detached():
    torch.manual_seed(0)
    w = (torch.rand(3, 8) * 2.4 - 1.2).requires_grad_(True)
    g = torch.randn(3, 8)
    xnor_binarize_weight(w).backward(g)
    wd = w.detach()
    n = wd.shape[1]
    alpha = wd.abs().mean(dim=1, keepdim=True)
    mask = (wd.abs() <= 1).float()
    through_alpha = (g * sign(wd)).sum(dim=1, keepdim=True) * sign(wd) / n
    assert torch.allclose(w.grad, g * alpha * mask + through_alpha, atol=1e-6)

    w2 = wd.clone().requires_grad_(True)
    xnor_binarize_weight(w2, detach_alpha=True).backward(g)
    assert torch.allclose(w2.grad, g * alpha * mask, atol=1e-6)
