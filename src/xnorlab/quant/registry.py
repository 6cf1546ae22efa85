"""Quantizers registered by name.

A quantizer is a small ``nn.Module`` mapping a tensor to its quantized value (forward) with a
straight-through backward. Layers hold them as sub-modules so that ``model.train()/eval()``
switches stochastic quantizers between sampling and the deterministic test-time rule.

Registered names:

* ``ste_sign``    deterministic ``sign`` (sign(0)=+1), clipped STE;
* ``stoch_sign``  +1 with prob. ``hard_sigmoid(x)`` in training, ``sign`` in eval unless
  ``stochastic_eval=True``; clipped STE;
* ``xnor_weight`` ``alpha * sign(W)``, ``alpha = mean(|W|)`` per output channel (dim 0), alpha not
  detached (see :func:`xnorlab.quant.binarizers.xnor_binarize_weight`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .binarizers import binarize_det, binarize_stoch, channel_scale, xnor_binarize_weight

__all__ = [
    "Quantizer",
    "SteSign",
    "StochasticSign",
    "XnorWeight",
    "available_quantizers",
    "get_quantizer",
    "register_quantizer",
]


class Quantizer(nn.Module):
    """Base class. ``binary`` is True when the output values are exactly +-1 (no scale)."""

    name: str = "quantizer"
    binary: bool = True
    #: True if the output carries a per-output-channel scale (XNOR alpha).
    scaled: bool = False

    def __init__(self, stochastic_eval: bool = False) -> None:
        super().__init__()
        # Accepted by every quantizer so callers can pass one option set; only stochastic
        # quantizers use it.
        self.stochastic_eval = bool(stochastic_eval)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(values, scale)`` with ``forward(x) == values * scale`` (scale None: no scale).

        Layers convolve with ``values`` and multiply the per-channel ``scale`` afterwards, so
        XNOR pre-activations are exactly ``alpha * (integer)`` in float32.
        """
        return self(x), None

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class SteSign(Quantizer):
    """Deterministic sign with clipped straight-through gradient."""

    name = "ste_sign"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return binarize_det(x)


class StochasticSign(Quantizer):
    """Stochastic sign in training (and in eval if ``stochastic_eval``), else deterministic."""

    name = "stoch_sign"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.stochastic_eval:
            return binarize_stoch(x)
        return binarize_det(x)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, stochastic_eval={self.stochastic_eval}"


class XnorWeight(Quantizer):
    """XNOR-Net weight quantizer: ``alpha * sign(W)``, alpha = mean(|W|) per output channel."""

    name = "xnor_weight"
    binary = False
    scaled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return xnor_binarize_weight(x)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # alpha not detached: same gradient as forward(), the product is just reassociated.
        return binarize_det(x), channel_scale(x)

    @staticmethod
    def scale(w: torch.Tensor) -> torch.Tensor:
        """The per-output-channel ``alpha`` for weight ``w`` (shape broadcastable to ``w``)."""
        return channel_scale(w)


_REGISTRY: dict[str, Callable[..., Quantizer]] = {}


def register_quantizer(name: str, factory: Callable[..., Quantizer]) -> None:
    """Register ``factory`` (called with ``stochastic_eval=...``) under ``name``."""
    if name in _REGISTRY:
        raise ValueError(f"quantizer {name!r} is already registered")
    _REGISTRY[name] = factory


def available_quantizers() -> list[str]:
    """Sorted names accepted by :func:`get_quantizer`."""
    return sorted(_REGISTRY)


def get_quantizer(
    name: str | Quantizer | None, *, stochastic_eval: bool = False
) -> Quantizer | None:
    """Build the quantizer registered as ``name``; ``None`` (or "none"/"null") gives ``None``.

    A :class:`Quantizer` instance is returned unchanged. Unknown names raise ``ValueError``
    listing the valid ones.
    """
    if name is None or isinstance(name, Quantizer):
        return name
    if not isinstance(name, str):
        raise TypeError(f"quantizer must be a name, a Quantizer or None, got {type(name)!r}")
    if name.lower() in ("none", "null", ""):
        return None
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown quantizer {name!r}; valid names: {', '.join(available_quantizers())} "
            "(or null for no quantization)"
        ) from None
    return factory(stochastic_eval=stochastic_eval)


for _cls in (SteSign, StochasticSign, XnorWeight):
    register_quantizer(_cls.name, _cls)
