"""Multilayer perceptron (BNN paper MNIST net), float or binarized, as an ``nn.Sequential``."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from ..quant.config import QuantConfig
from ..quant.layers import BinaryLinear
from .config import MLPConfig

__all__ = ["build_mlp"]


def build_mlp(
    cfg: MLPConfig,
    quant: QuantConfig,
    input_shape: Sequence[int],
    num_classes: int,
    mean: float | Sequence[float] = 0.0,
    std: float | Sequence[float] = 1.0,
) -> nn.Sequential:
    """Build the MLP.

    Module order: ``input, Flatten, [Dropout], BinaryLinear, BatchNorm1d, [act],
    ([Dropout], BinaryLinear, BatchNorm1d, [act]) x (depth - 1), [Dropout], BinaryLinear,
    BatchNorm1d``. ``input`` is ``Normalize`` (float) or ``Quantize8bit``; ``act`` is ReLU (float)
    or Hardtanh (BinaryConnect) and absent for BNN/XNOR, whose next layer binarizes its input.
    Dropout modules appear only when their probability is > 0. ``depth = 0`` gives logreg.
    Layers have no bias (every one is followed by BatchNorm), float ones included.
    """
    if cfg.depth < 0 or cfg.hidden <= 0:
        raise ValueError("mlp needs depth >= 0 and hidden > 0")
    layers: list[nn.Module] = [quant.input_module(mean, std), nn.Flatten()]
    in_features = math.prod(input_shape)
    widths = [cfg.hidden] * cfg.depth + [num_classes]
    for i, out_features in enumerate(widths):
        p = cfg.dropout_input if i == 0 else cfg.dropout_hidden
        if p > 0:
            layers.append(nn.Dropout(p))
        layers.append(
            BinaryLinear(in_features, out_features, bias=False, **quant.layer_kwargs(i == 0))
        )
        # BatchNorm after every layer, the last included (BNN / BinaryConnect recipes).
        layers.append(nn.BatchNorm1d(out_features, eps=cfg.bn_eps, momentum=cfg.bn_momentum))
        act = quant.real_activation()
        if act is not None and i < len(widths) - 1:
            layers.append(act)
        in_features = out_features
    return nn.Sequential(*layers)
