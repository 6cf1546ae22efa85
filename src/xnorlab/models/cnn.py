"""BNN paper VGG-like ConvNet, float or binarized, as an ``nn.Sequential``."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..quant.config import QuantConfig
from ..quant.layers import BinaryConv2d, BinaryLinear
from .config import CNNConfig

__all__ = ["build_cnn"]


def build_cnn(
    cfg: CNNConfig,
    quant: QuantConfig,
    input_shape: Sequence[int],
    num_classes: int,
    mean: float | Sequence[float] = 0.0,
    std: float | Sequence[float] = 1.0,
) -> nn.Sequential:
    """Build ``(2xC3)-MP2-(2xC3)-MP2-(2xC3)-MP2-(fc_depth x FC)-classes``.

    Module order::

        input,
        (BinaryConv2d, BatchNorm2d, [act], BinaryConv2d, BatchNorm2d, MaxPool2d(2), [act]) x 3,
        Flatten, ([Dropout], BinaryLinear, BatchNorm1d, [act]) x fc_depth,
        [Dropout], BinaryLinear, BatchNorm1d

    No layer has a bias (BatchNorm follows each). Convs are 3x3, stride 1, padding 1
    (binary-input convs pad the binarized input with +1).
    Pooling floors (28 -> 14 -> 7 -> 3; 32 -> 16 -> 8 -> 4); Flatten is channel-major (C, H, W).
    ``act`` (ReLU float, Hardtanh BinaryConnect) comes after the pool; it is absent for BNN/XNOR.
    """
    c_in, h, w = input_shape
    if min(h, w) < 8:
        raise ValueError(f"cnn needs inputs of at least 8x8, got {h}x{w}")
    layers: list[nn.Module] = [quant.input_module(mean, std)]
    channels = [cfg.width, cfg.width, 2 * cfg.width, 2 * cfg.width, 4 * cfg.width, 4 * cfg.width]
    for i, c_out in enumerate(channels):
        layers.append(
            BinaryConv2d(c_in, c_out, 3, padding=1, bias=False, **quant.layer_kwargs(i == 0))
        )
        layers.append(nn.BatchNorm2d(c_out, eps=cfg.bn_eps, momentum=cfg.bn_momentum))
        if i % 2 == 1:
            # conv -> BN -> pool: sign commutes with max, so the engine can pool bits.
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        act = quant.real_activation()
        if act is not None:
            layers.append(act)
        c_in = c_out
    layers.append(nn.Flatten())
    in_features = c_in * h * w
    widths = [cfg.fc_width] * cfg.fc_depth + [num_classes]
    for i, out_features in enumerate(widths):
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        layers.append(
            BinaryLinear(in_features, out_features, bias=False, **quant.layer_kwargs(False))
        )
        layers.append(nn.BatchNorm1d(out_features, eps=cfg.bn_eps, momentum=cfg.bn_momentum))
        act = quant.real_activation()
        if act is not None and i < len(widths) - 1:
            layers.append(act)
        in_features = out_features
    return nn.Sequential(*layers)
