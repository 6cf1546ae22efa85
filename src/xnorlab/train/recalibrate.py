"""BatchNorm statistics for the network that evaluation runs, after training sampled another.

Stochastic binarization trains on sampled +-1 values whose mean is the latent value, but
evaluation uses their sign (BinaryConnect's test-time rule): the pre-activations then have
other means and variances than the running statistics BatchNorm gathered in training, and a
deep network collapses (the width-16 CNN sat at 9% error, at chance on small data). Re-estimating
those statistics on training images with the deterministic network fixes the mismatch; the
weights are untouched and no random numbers are drawn, so training goes on exactly as before.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from xnorlab.quant.registry import Quantizer


def needs_recalibration(model: nn.Module) -> bool:
    """True if `model` has BatchNorm and a quantizer that samples in training but not in eval."""
    sampled = any(isinstance(m, Quantizer) and m.stochastic and m.deterministic_eval
                  for m in model.modules())
    return sampled and any(isinstance(m, _BatchNorm) for m in model.modules())


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
