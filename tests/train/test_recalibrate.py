"""BatchNorm statistics re-estimated for the deterministic eval network of stochastic
binarization (train/recalibrate.py)."""

from __future__ import annotations

import torch
from torch import nn

from xnorlab.quant.layers import BinaryConv2d
from xnorlab.train.recalibrate import needs_recalibration, recalibrate_batchnorm


def net(weight_quantizer: str) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(BinaryConv2d(1, 4, 3, kernel_quantizer=weight_quantizer),
                         nn.BatchNorm2d(4), nn.Dropout(0.5))


def test_statistics_are_those_of_the_eval_network():
    model = net("stoch_sign")
    x = torch.rand(64, 1, 8, 8)
    model.train()
    model(x)  # running statistics of sampled weights
    rng = torch.get_rng_state()
    recalibrate_batchnorm(model, x, batch_size=16)
    assert torch.equal(torch.get_rng_state(), rng)  # nothing sampled: training goes on as before
    assert model.training and model[1].momentum == 0.1  # mode and momentum restored
    model.eval()
    with torch.no_grad():
        pre = model[0](x)  # deterministic sign(W) in eval
    expect_mean = pre.mean(dim=(0, 2, 3))
    expect_var = pre.var(dim=(0, 2, 3), unbiased=False)
    # the cumulative average of per-batch statistics: equal means; each batch's variance
    # around its own mean (unbiased) averages close to the whole set's
    assert torch.allclose(model[1].running_mean, expect_mean, atol=1e-5)
    assert torch.allclose(model[1].running_var, expect_var, rtol=0.1)


def test_every_network_with_batchnorm_gets_it():
    assert needs_recalibration(net("stoch_sign"))
    assert needs_recalibration(net("ste_sign"))  # deterministic weights flip faster than BN follows
    assert not needs_recalibration(nn.Sequential(BinaryConv2d(1, 4, 3,
                                                              kernel_quantizer="stoch_sign")))
