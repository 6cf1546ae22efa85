"""The BNN paper's MNIST MLP (784-4096-4096-4096-10) with random weights: a speed subject.

Training it takes days on a CPU, but its speed does not depend on its weights. BatchNorm
statistics are randomized (negative scales included) so every threshold path is exercised.
"""

from __future__ import annotations

import torch
from torch import nn

from xnorlab.models.build import build_model


def random_paper_mlp(hidden: int = 4096, depth: int = 3, seed: int = 0) -> nn.Module:
    """An eval-mode BNN MLP of the paper's shape with random latent weights and BN state."""
    gen = torch.Generator().manual_seed(seed)
    model = build_model({"name": "mlp", "hidden": hidden, "depth": depth}, "bnn",
                        (1, 28, 28), 10, 0.1307, 0.3081)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                n = m.num_features
                fan_in = 784 * 255 if m is _first_bn(model) else n
                m.running_mean.copy_(torch.randn(n, generator=gen) * fan_in**0.5 * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) * fan_in + 1)
                m.weight.copy_(torch.randn(n, generator=gen))
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
    return model.eval()


def _first_bn(model: nn.Module) -> nn.Module:
    return next(m for m in model.modules() if isinstance(m, nn.BatchNorm1d))
