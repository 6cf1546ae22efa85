"""ApproxSign (Bi-Real Net): gradient against a NumPy reference, training, exact export."""

import numpy as np
import torch
from tests.packed.test_export import _images, _randomize, _to_torch

from xnorlab.bench.exactness import compare
from xnorlab.models import build_model
from xnorlab.packed.export import export_model
from xnorlab.quant import get_quantizer, quant_preset


def approx_sign_grad(x: np.ndarray) -> np.ndarray:
    """d ApproxSign / dx: 2 - 2|x| on |x| <= 1, else 0 (Liu et al. 2018, eq. 4)."""
    return np.where(np.abs(x) <= 1, 2 - 2 * np.abs(x), 0.0)


def test_forward_is_sign_and_gradient_matches_reference():
    x = torch.tensor([-2.0, -1.0, -0.75, -0.1, 0.0, 0.3, 0.5, 1.0, 1.5], requires_grad=True)
    y = get_quantizer("approx_sign")(x)
    assert y.tolist() == [-1, -1, -1, -1, 1, 1, 1, 1, 1]
    g = torch.linspace(0.5, 2.0, x.numel())
    y.backward(g)
    want = g.numpy() * approx_sign_grad(x.detach().numpy())
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=0, atol=1e-7)


def test_gradient_differs_from_the_clipped_ste():
    x = torch.linspace(-1.5, 1.5, 31, requires_grad=True)
    get_quantizer("approx_sign")(x).sum().backward()
    approx = x.grad.clone()
    x.grad = None
    get_quantizer("ste_sign")(x).sum().backward()
    inside, outside = x.detach().abs() < 1, x.detach().abs() > 1
    assert not torch.equal(approx[inside], x.grad[inside])
    assert torch.equal(approx[outside], x.grad[outside])  # both zero outside |x| <= 1


def test_preset_exports_bit_exactly():
    assert quant_preset("bnn_approx").activation_quantizer == "approx_sign"
    shape = (1, 28, 28)
    torch.manual_seed(0)
    model = build_model({"name": "mlp", "hidden": 96, "depth": 2}, "bnn_approx", shape)
    u = _images(shape, 64, seed=3)
    _randomize(model, u, seed=5)
    engine = export_model(model, shape)
    result = compare(model, engine, _to_torch(u))
    assert result.exact and result.n_images == 64, result.as_dict()
