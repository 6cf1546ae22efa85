"""BatchNorm statistics for the network that evaluation runs, re-estimated before each validation.

BatchNorm's running statistics are an exponential average over the last few dozen training
batches, gathered by the training-mode network. Two things make them wrong for the eval network:

* stochastic binarization trains on sampled +-1 values whose mean is the latent value, but
  evaluation uses their sign (BinaryConnect's test-time rule), so the pre-activations have other
  means and variances (the width-16 stochastic CNN sat at 9% error, at chance on small data);
* deterministic binary weights flip sign faster than the average follows, so it mixes statistics
  of networks that no longer exist (a width-8 BNN CNN's validation accuracy fell from 0.90 to
  0.74 between its two epochs; re-estimated, it rose from 0.94 to 0.96).

Re-averaging the statistics over training images with the eval-mode network fixes both (as
"precise BN" does for float networks, where it changes little); every network with BatchNorm gets
it, so the recipe stays equal across methods. No weight changes and no random number is drawn,
and training-mode BatchNorm normalizes with batch statistics, so training itself is unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def needs_recalibration(model: nn.Module) -> bool:
    """True if `model` has BatchNorm (whose running statistics the eval network uses)."""
    return any(isinstance(m, _BatchNorm) for m in model.modules())


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Replace every BatchNorm's running mean and variance by their average over `x` (in
    batches of `batch_size`) as seen by the eval-mode network (deterministic quantizers, no
    dropout). The model's train/eval mode is restored."""
    was_training = model.training
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
        m.train()
    try:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size])
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
