"""Binary layers: +-1 weights in forward, +1 padding, XNOR scale, latent clipping."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xnorlab.quant import (
    BinaryConv2d,
    BinaryLinear,
    Normalize,
    Quantize8bit,
    clip_latent_weights,
    is_binary_layer,
    sign,
    xnor_binarize_weight,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _spy(monkeypatch, name):
    seen = []
    orig = getattr(F, name)

    def wrapper(*args, **kwargs):
        seen.append((args[0].detach().clone(), args[1].detach().clone()))
        return orig(*args, **kwargs)

    monkeypatch.setattr(F, name, wrapper)
    return seen


@pytest.mark.parametrize("kq", ["ste_sign", "stoch_sign"])
def test_linear_forward_uses_only_pm1_weights(monkeypatch, kq):
    layer = BinaryLinear(16, 8, input_quantizer="ste_sign", kernel_quantizer=kq)
    with torch.no_grad():
        layer.weight.mul_(7.0)  # latent weights far from +-1
    latent = layer.weight.detach().clone()
    seen = _spy(monkeypatch, "linear")
    x = torch.randn(4, 16)
    out = layer.eval()(x)
    assert len(seen) == 1
    x_used, w_used = seen[0]
    assert set(w_used.unique().tolist()) == {-1.0, 1.0}
    assert set(x_used.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(layer.weight.detach(), latent)  # latent kept in .weight
    assert torch.equal(out, sign(x) @ sign(latent).T)
    assert layer.bias is None


def test_conv_forward_uses_only_pm1_weights(monkeypatch):
    layer = BinaryConv2d(
        3, 5, 3, padding=1, input_quantizer="ste_sign", kernel_quantizer="ste_sign"
    )
    seen = _spy(monkeypatch, "conv2d")
    layer(torch.randn(2, 3, 6, 6))
    assert len(seen) == 1
    x_used, w_used = seen[0]
    assert set(w_used.unique().tolist()) == {-1.0, 1.0}
    assert set(x_used.unique().tolist()) == {-1.0, 1.0}  # the padding too
    assert x_used.shape == (2, 3, 8, 8)


def test_bias_default_follows_kernel_quantizer():
    assert BinaryLinear(3, 2, kernel_quantizer="ste_sign").bias is None
    assert BinaryLinear(3, 2).bias is not None
    assert BinaryLinear(3, 2, bias=True, kernel_quantizer="ste_sign").bias is not None
    assert BinaryConv2d(3, 2, 3, kernel_quantizer="xnor_weight").bias is None
    assert BinaryConv2d(3, 2, 3).bias is not None


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 2), (1, (1, 2))])
def test_binary_input_conv_pads_with_plus_one(stride, padding):
    layer = BinaryConv2d(
        1,
        3,
        3,
        stride=stride,
        padding=padding,
        input_quantizer="ste_sign",
        kernel_quantizer="ste_sign",
    )
    x = torch.randn(2, 1, 7, 7)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    wb = sign(layer.weight.detach())
    xp = F.pad(sign(x), (pw, pw, ph, ph), value=1.0)
    manual = F.conv2d(xp, wb, stride=stride)
    out = layer(x).detach()
    assert torch.equal(out, manual)
    zero_padded = F.conv2d(sign(x), wb, stride=stride, padding=padding)
    assert not torch.equal(out, zero_padded)
    # Every output sums 9 terms of +-1 (none is a padded zero), so every output is odd.
    assert torch.all(out.remainder(2) == 1)


def test_real_input_conv_uses_zero_padding():
    layer = BinaryConv2d(3, 4, 3, padding=1, kernel_quantizer="ste_sign")
    x = torch.rand(2, 3, 5, 5)
    manual = F.conv2d(x, sign(layer.weight.detach()), padding=1)
    assert torch.allclose(layer(x), manual)


@pytest.mark.parametrize("conv", [False, True], ids=["linear", "conv"])
def test_xnor_layer_is_alpha_times_integer(monkeypatch, conv):
    """XNOR: the op sees +-1 weights only; output is exactly alpha (per channel) * integer."""
    kw = {"input_quantizer": "ste_sign", "kernel_quantizer": "xnor_weight"}
    layer = BinaryConv2d(3, 4, 3, padding=1, **kw) if conv else BinaryLinear(12, 4, **kw)
    with torch.no_grad():
        layer.weight.mul_(
            torch.tensor([0.1, 1.0, 3.0, 0.5]).view(4, *[1] * (layer.weight.dim() - 1))
        )
    w = layer.weight.detach()
    alpha = w.abs().mean(dim=tuple(range(1, w.dim())))
    x = torch.randn(3, 3, 5, 5) if conv else torch.randn(3, 12)
    seen = _spy(monkeypatch, "conv2d" if conv else "linear")
    out = layer(x)
    assert set(seen[0][1].unique().tolist()) == {-1.0, 1.0}
    if conv:
        integer = F.conv2d(F.pad(sign(x), (1, 1, 1, 1), value=1.0), sign(w))
        assert torch.equal(out, integer * alpha.view(1, -1, 1, 1))
    else:
        assert torch.equal(out, (sign(x) @ sign(w).T) * alpha)
    assert torch.allclose(layer.quantized_weight().abs().flatten(1).amax(dim=1), alpha)


def test_xnor_layer_gradient_matches_folded_weight():
    layer = BinaryLinear(10, 3, input_quantizer="ste_sign", kernel_quantizer="xnor_weight")
    x = torch.randn(6, 10)
    g = torch.randn(6, 3)
    layer(x).backward(g)
    w = layer.weight.detach().clone().requires_grad_(True)
    F.linear(sign(x), xnor_binarize_weight(w)).backward(g)
    assert torch.allclose(layer.weight.grad, w.grad, atol=1e-6)


def test_activation_scale_linear_and_conv():
    lin = BinaryLinear(
        6, 3, input_quantizer="ste_sign", kernel_quantizer="xnor_weight", activation_scale=True
    )
    x = torch.randn(4, 6)
    base = F.linear(sign(x), lin.quantized_weight())
    assert torch.allclose(lin(x), base * x.abs().mean(dim=1, keepdim=True), atol=1e-6)

    conv = BinaryConv2d(
        2,
        3,
        3,
        padding=1,
        input_quantizer="ste_sign",
        kernel_quantizer="xnor_weight",
        activation_scale=True,
    )
    x = torch.randn(2, 2, 5, 5)
    base = F.conv2d(F.pad(sign(x), (1, 1, 1, 1), value=1.0), conv.quantized_weight())
    k = F.avg_pool2d(F.pad(x.abs().mean(dim=1, keepdim=True), (1, 1, 1, 1)), 3, 1)
    assert torch.allclose(conv(x), base * k, atol=1e-5)
    with pytest.raises(ValueError, match="activation_scale"):
        BinaryLinear(6, 3, kernel_quantizer="xnor_weight", activation_scale=True)


def test_stochastic_kernel_is_deterministic_in_eval():
    layer = BinaryLinear(32, 16, kernel_quantizer="stoch_sign")
    with torch.no_grad():
        layer.weight.mul_(10.0).clamp_(-0.9, 0.9)
    x = torch.randn(8, 32)
    assert not torch.equal(layer(x), layer(x))
    layer.eval()
    assert torch.equal(layer(x), x @ sign(layer.weight.detach()).T)


def test_latent_weight_gradient_is_ste():
    layer = BinaryLinear(4, 2, kernel_quantizer="ste_sign")
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.5, -2.0, 1.0, -0.2], [3.0, 0.1, -1.5, 0.0]]))
    layer(torch.ones(1, 4)).sum().backward()
    expected = (layer.weight.detach().abs() <= 1).float()
    assert torch.equal(layer.weight.grad, expected)


def test_clip_latent_weights_only_touches_binary_kernels():
    model = nn.Sequential(
        BinaryLinear(4, 4, kernel_quantizer="ste_sign"),
        BinaryConv2d(1, 2, 3, kernel_quantizer="xnor_weight"),
        BinaryLinear(4, 4),  # real kernel
        nn.Linear(4, 4),
    )
    with torch.no_grad():
        for m in model:
            m.weight.mul_(0).add_(torch.randn_like(m.weight) * 5)
    before = [m.weight.detach().clone() for m in model]
    assert clip_latent_weights(model) == 2
    for m, b in zip(model[:2], before[:2], strict=True):
        assert m.weight.abs().max() <= 1.0
        assert torch.equal(m.weight, b.clamp(-1, 1))
    assert torch.equal(model[2].weight, before[2]) and torch.equal(model[3].weight, before[3])
    assert [is_binary_layer(m) for m in model] == [True, True, True, False]


def test_input_modules():
    x = torch.tensor([0.0, 1 / 255, 0.5, 1.0]).view(1, 1, 2, 2)
    assert torch.equal(Quantize8bit()(x).flatten(), torch.tensor([0.0, 1.0, 128.0, 255.0]))
    norm = Normalize([0.5, 0.25], [0.5, 0.25])
    y = norm(torch.full((1, 2, 1, 1), 0.5))
    assert torch.allclose(y.flatten(), torch.tensor([0.0, 1.0]))


def test_unknown_quantizer_in_layer():
    with pytest.raises(ValueError, match="valid names"):
        BinaryLinear(3, 2, kernel_quantizer="sign")
