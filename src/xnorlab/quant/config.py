"""Quantization config (Hydra structured config); the named presets are ``conf/quant/*.yaml``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..schema import quant_presets
from .layers import Normalize, Quantize8bit
from .registry import get_quantizer

__all__ = [
    "QuantConfig",
    "available_presets",
    "quant_preset",
    "register_configs",
    "to_quant_config",
]


@dataclass
class QuantConfig:
    """How a model is binarized.

    Attributes:
        name: the method's name (its preset file's stem, for the presets).
        label: its display name in tables and plots.
        weight_quantizer: registered quantizer for kernels, or None (real weights).
        activation_quantizer: registered quantizer for hidden-layer inputs, or None (real
            activations).
        clip_latent: clamp latent weights to [-1, 1] after each optimizer step.
        stochastic_eval: keep stochastic quantizers stochastic at evaluation.
        activation_scale: XNOR-Net activation scale beta (only with an activation quantizer).
        lean_backward: store what binary layers save for backward bit-packed (+-1 inputs, STE
            masks) or as small integers (+-1 x +-1 products); gradients are bit-identical
            (see :mod:`xnorlab.quant.lean`). No effect on float models.
    """

    name: str = "float"
    label: str = ""
    weight_quantizer: str | None = None
    activation_quantizer: str | None = None
    clip_latent: bool = False
    stochastic_eval: bool = False
    activation_scale: bool = False
    lean_backward: bool = True

    @property
    def is_float(self) -> bool:
        """True when nothing is quantized."""
        return self.weight_quantizer is None and self.activation_quantizer is None

    @property
    def binary_activations(self) -> bool:
        """True when hidden activations are binarized (BNN / XNOR)."""
        return self.activation_quantizer is not None

    def validate(self) -> QuantConfig:
        """Raise ``ValueError`` for unknown quantizer names or inconsistent flags."""
        get_quantizer(self.weight_quantizer)
        get_quantizer(self.activation_quantizer)
        if self.activation_scale and self.activation_quantizer is None:
            raise ValueError("activation_scale requires an activation_quantizer")
        return self

    # -- helpers used by the model builders ------------------------------------------------

    def layer_kwargs(self, real_input: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``BinaryLinear`` / ``BinaryConv2d`` under this config.

        ``real_input=True`` is for the first layer: its input (8-bit pixels) stays real.
        """
        return {
            "input_quantizer": None if real_input else self.activation_quantizer,
            "kernel_quantizer": self.weight_quantizer,
            "stochastic_eval": self.stochastic_eval,
            "activation_scale": self.activation_scale and not real_input,
        }

    def input_module(
        self, mean: float | Sequence[float] = 0.0, std: float | Sequence[float] = 1.0
    ) -> nn.Module:
        """``Normalize(mean, std)`` for float models, ``Quantize8bit()`` for binarized ones."""
        if self.is_float:
            return Normalize(mean, std)
        return Quantize8bit()

    def real_activation(self) -> nn.Module | None:
        """Activation module after BatchNorm: ReLU (float), Hardtanh (BinaryConnect), or None
        when the next layer's input quantizer binarizes (BNN / XNOR)."""
        if self.is_float:
            return nn.ReLU()
        if self.activation_quantizer is None:
            return nn.Hardtanh()
        return None


def available_presets() -> list[str]:
    """Names of the quant methods defined in ``conf/quant/``."""
    return list(quant_presets())


def quant_preset(name: str) -> QuantConfig:
    """The preset ``conf/quant/<name>.yaml``; unknown names raise ``ValueError`` listing the
    valid ones."""
    presets = quant_presets()
    if name not in presets:
        raise ValueError(
            f"unknown quant method {name!r}; valid names: {', '.join(sorted(presets))}"
        )
    return to_quant_config(presets[name])


def to_quant_config(cfg: QuantConfig | Mapping[str, Any] | str | Any) -> QuantConfig:
    """Coerce a dataclass, dict, OmegaConf ``DictConfig`` or preset name into a validated
    :class:`QuantConfig` (unknown keys raise)."""
    if isinstance(cfg, QuantConfig):
        return dataclasses.replace(cfg).validate()
    if isinstance(cfg, str):
        return quant_preset(cfg)
    from omegaconf import OmegaConf

    merged = OmegaConf.merge(OmegaConf.structured(QuantConfig), cfg)
    return OmegaConf.to_object(merged).validate()  # type: ignore[union-attr]


def register_configs(cs: Any = None, group: str = "quant") -> None:
    """Store the schema as ``base_quant`` in ``group`` of Hydra's ConfigStore.

    The YAML files in ``conf/quant/`` are plain; a YAML can opt in to validation with
    ``defaults: [base_quant, _self_]`` once this has run.
    """
    if cs is None:
        from hydra.core.config_store import ConfigStore

        cs = ConfigStore.instance()
    cs.store(group=group, name="base_quant", node=QuantConfig)
