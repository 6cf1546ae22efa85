"""The +-1 x +-1 forward on XNOR-popcount: the values and gradients of F.linear, bit for bit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tests.quant.test_lean import train_steps

from xnorlab.quant import lean, xnor_linear
from xnorlab.quant.binarizers import binarize_det

pytestmark = pytest.mark.slow  # trains models

MLP_WORDS = {"name": "mlp", "hidden": 128, "depth": 2}  # hidden rows of two 64-bit words


def test_linear_matches_f_linear_and_its_gradients_bitwise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(37, 192, generator=g).requires_grad_()
    w = torch.randn(70, 192, generator=g).requires_grad_()
    grad = torch.randn(37, 70, generator=g)
    grads = []
    for use_bits in (False, True):
        x.grad = w.grad = None
        with lean.LeanSaving():
            xs, ws = binarize_det(x * 1.0), binarize_det(w)
            assert (lean.pm1_bits(ws) is not None) == (lean.pm1_bits(xs) is not None)
            out = xnor_linear.linear(xs, ws) if use_bits else F.linear(xs, ws)
        assert (type(out.grad_fn).__name__ == "_XnorLinearBackward") == use_bits
        out.backward(grad)
        grads.append((out.detach(), x.grad.clone(), w.grad.clone()))
    for a, b in zip(*grads, strict=True):
        assert torch.equal(a.view(torch.int32), b.view(torch.int32))


def test_falls_back_to_f_linear_without_bits_or_whole_words():
    x, w = torch.ones(4, 64), -torch.ones(8, 64)
    assert torch.equal(xnor_linear.linear(x, w), F.linear(x, w))  # no lean forward: no bits
    with lean.LeanSaving():
        xs = binarize_det(torch.randn(4, 96).requires_grad_() * 1.0)
        ws = binarize_det(torch.randn(8, 96).requires_grad_())
        out = xnor_linear.linear(xs, ws)  # 96 bits are not whole words
    assert out.grad_fn is not None and "XnorLinear" not in type(out.grad_fn).__name__


@pytest.mark.parametrize("quant", ["bnn", "xnor"])
def test_training_on_xnor_popcount_is_bit_identical_to_the_standard_path(quant, monkeypatch):
    calls = []
    apply = xnor_linear._XnorLinear.apply
    monkeypatch.setattr(xnor_linear._XnorLinear, "apply",
                        lambda *a: calls.append(1) or apply(*a))
    g_std, w_std, _ = train_steps(MLP_WORDS, quant, lean_on=False)
    assert not calls
    g_lean, w_lean, _ = train_steps(MLP_WORDS, quant, lean_on=True)
    assert len(calls) == 3 * 2  # 3 steps x 2 hidden layers with +-1 inputs
    for a, b in zip([g for s in g_std for g in s] + w_std,
                    [g for s in g_lean for g in s] + w_lean, strict=True):
        assert torch.equal(a.view(torch.int32), b.view(torch.int32))
