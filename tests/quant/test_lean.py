"""quant.lean_backward: packed saved tensors give bit-identical gradients and use less memory."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from xnorlab.models.build import build_model
from xnorlab.quant import lean
from xnorlab.quant.config import quant_preset
from xnorlab.quant.layers import clip_latent_weights
from xnorlab.train.memory import saved_tensor_bytes, step_memory

pytestmark = pytest.mark.slow  # trains models

BINARIZED = ["bc_det", "bc_stoch", "bnn", "bnn_approx", "bnn_stoch", "xnor"]
MODELS = {
    "logreg": {"name": "logreg"},
    "mlp": {"name": "mlp", "hidden": 96, "depth": 2},
    "cnn": {"name": "cnn", "width": 4, "fc_width": 32},
    "vit": {"name": "vit", "depth": 1, "dim": 16, "heads": 2, "patch_size": 7},
}


def pixels(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST-like input: 8-bit pixel levels in [0, 1], mostly dark."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 1, 28, 28), generator=g).float().div(255)
    x = x * (torch.rand(x.shape, generator=g) < 0.3)
    return x, torch.randint(0, 10, (n,), generator=g)


def train_steps(model_cfg: dict, quant: str, lean_on: bool, steps: int = 3):
    torch.manual_seed(0)
    qcfg = dataclasses.replace(quant_preset(quant), lean_backward=lean_on)
    model = build_model(model_cfg, qcfg).train()
    assert lean.is_installed(model) == lean_on
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = pixels(32)
    torch.manual_seed(7)  # stochastic quantizers draw from the global stream
    grads = []
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
        opt.step()
        clip_latent_weights(model)
    return grads, [p.detach().clone() for p in model.parameters()], model


@pytest.mark.parametrize("quant", BINARIZED)
@pytest.mark.parametrize("model", sorted(MODELS))
def test_lean_backward_gradients_and_weights_are_bit_identical(model, quant):
    g_std, w_std, _ = train_steps(MODELS[model], quant, lean_on=False)
    g_lean, w_lean, _ = train_steps(MODELS[model], quant, lean_on=True)
    for step_std, step_lean in zip(g_std, g_lean, strict=True):
        for a, b in zip(step_std, step_lean, strict=True):
            assert torch.equal(a, b)  # bitwise: equal values, no tolerance
    for a, b in zip(w_std, w_lean, strict=True):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(w_std, train_steps(
        MODELS[model], quant, lean_on=False, steps=1)[1], strict=True)), "weights never moved"


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_lean_saves_less_for_binary_activations(model):
    x, y = pixels(16)
    saved = {}
    for on in (False, True):
        qcfg = dataclasses.replace(quant_preset("bnn"), lean_backward=on)
        net = build_model(MODELS[model], qcfg).train()
        saved[on] = saved_tensor_bytes(net, lambda n=net: F.cross_entropy(n(x), y))["saved_bytes"]
    assert saved[True] < 0.5 * saved[False]


def test_bnn_mlp_3x1024_lean_saved_bytes_goal_at_batch_1024():
    # The goal: <= 0.35x the float MLP's saved-for-backward bytes (a byte count).
    x, y = pixels(1024)
    cfg = {"name": "mlp", "hidden": 1024, "depth": 3}
    saved = {}
    for q in ("float", "bnn"):
        net = build_model(cfg, q)
        saved[q] = saved_tensor_bytes(net, lambda n=net: F.cross_entropy(n(x), y))["saved_bytes"]
    assert saved["bnn"] <= 0.35 * saved["float"]


def test_a_marked_tensor_that_breaks_its_bound_is_saved_exactly():
    x = torch.tensor([0.5, 300.0, -2.0], requires_grad=True)
    with lean.LeanSaving():
        h = x * 1.0
        lean.mark_int(h, 0, 255)  # a false promise: not integers, out of range
        y = (h * h).sum()
    y.backward()
    assert torch.equal(x.grad, 2 * x.detach())


def test_marked_views_unpack_with_their_strides():
    w = torch.randn(5, 7, requires_grad=True)
    x = torch.randn(3, 7)
    with lean.LeanSaving():
        s = torch.where(x >= 0, 1.0, -1.0)
        lean.mark_pm1(s)
        out = (s.t().contiguous().t() @ w.t()) + (s @ w.t())  # saves s and a transposed view
    out.sum().backward()
    assert torch.equal(w.grad, 2 * s.sum(0).expand(5, 7))


def test_step_memory_counts_each_kind():
    x, y = pixels(64)
    net = build_model(MODELS["mlp"], "bnn")
    before = [p.detach().clone() for p in net.parameters()]
    m = step_memory(net, x, y, rss=False)
    n = sum(p.numel() for p in net.parameters())
    assert m["param_bytes"] == m["grad_bytes"] == 4 * n
    assert m["optimizer_bytes"] >= 8 * n  # Adam: two moments per parameter
    assert 0 < m["saved_bytes"] < m["step_peak_bytes"] or m["step_peak_bytes"] == -1
    # measured on a copy: the model itself is untouched
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
