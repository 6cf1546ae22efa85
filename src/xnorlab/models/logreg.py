"""(Multinomial) logistic regression: one linear layer, float or with a binary kernel."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..quant.config import QuantConfig
from .config import LogRegConfig, MLPConfig
from .mlp import build_mlp

__all__ = ["build_logreg"]


def build_logreg(
    cfg: LogRegConfig,
    quant: QuantConfig,
    input_shape: Sequence[int],
    num_classes: int,
    mean: float | Sequence[float] = 0.0,
    std: float | Sequence[float] = 1.0,
) -> nn.Sequential:
    """Module order: ``input, Flatten, BinaryLinear, BatchNorm1d`` (scores).

    For binarized quants the kernel is binary and its input is the real 8-bit image
    (``Quantize8bit``), so only the weight quantizer matters. The BatchNorm1d stands in for the
    bias (and keeps the structure identical to the other exported models).
    """
    mlp_cfg = MLPConfig(hidden=1, depth=0, bn_momentum=cfg.bn_momentum, bn_eps=cfg.bn_eps)
    return build_mlp(mlp_cfg, quant, input_shape, num_classes, mean, std)
