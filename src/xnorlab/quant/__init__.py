"""xnorlab.quant: binarization functions, quantizer registry, binary layers, QuantConfig."""

from .binarizers import (
    SignSTE,
    StochasticSignSTE,
    binarize_det,
    binarize_stoch,
    channel_scale,
    hard_sigmoid,
    sign,
    xnor_binarize_weight,
)
from .config import QUANT_PRESETS, QuantConfig, quant_preset, register_configs, to_quant_config
from .layers import (
    BinaryConv2d,
    BinaryLinear,
    Normalize,
    Quantize8bit,
    clip_latent_weights,
    glorot_lr_scale,
    init_latent_uniform,
    is_binary_layer,
)
from .registry import (
    Quantizer,
    SteSign,
    StochasticSign,
    XnorWeight,
    available_quantizers,
    get_quantizer,
    register_quantizer,
)

__all__ = [
    "QUANT_PRESETS",
    "BinaryConv2d",
    "BinaryLinear",
    "Normalize",
    "QuantConfig",
    "Quantize8bit",
    "Quantizer",
    "SignSTE",
    "SteSign",
    "StochasticSign",
    "StochasticSignSTE",
    "XnorWeight",
    "available_quantizers",
    "binarize_det",
    "binarize_stoch",
    "channel_scale",
    "clip_latent_weights",
    "get_quantizer",
    "glorot_lr_scale",
    "hard_sigmoid",
    "init_latent_uniform",
    "is_binary_layer",
    "quant_preset",
    "register_configs",
    "register_quantizer",
    "sign",
    "to_quant_config",
    "xnor_binarize_weight",
]
