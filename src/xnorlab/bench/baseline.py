"""The float32 network that packed inference is timed against."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from xnorlab.models.build import build_model


def float_twin(
    model_cfg: Mapping[str, Any], input_shape: Sequence[int], num_classes: int
) -> nn.Module:
    """The same architecture built with `quant=float`: real weights, ReLU, eval mode.

    Timing the binarized torch model instead would charge torch for re-binarizing its latent
    weights on every call, which a deployed float network never does.
    """
    return build_model(dict(model_cfg), "float", tuple(input_shape), num_classes).eval()
