"""Quantizers registered by name, each declaring what it is.

A quantizer is a small ``nn.Module`` mapping a tensor to its quantized value (forward) with a
straight-through backward. Layers hold them as sub-modules so that ``model.train()/eval()``
switches stochastic quantizers between sampling and the deterministic test-time rule.

Every quantizer class states its capabilities as class attributes (``binary``, ``scaled``,
``stochastic``, ``exportable``); the exporter, the training module and the report read those,
never class identity or names. A new method is one class with ``@register_quantizer``.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

import torch
from torch import nn

from .binarizers import (
    binarize_approx,
    binarize_det,
    binarize_stoch,
    channel_scale,
    xnor_binarize_weight,
)

__all__ = [
    "ApproxSign",
    "Quantizer",
    "SteSign",
    "StochasticSign",
    "XnorWeight",
    "available_quantizers",
    "get_quantizer",
    "quantizer_class",
    "register_quantizer",
]


class Quantizer(nn.Module):
    """Base class; subclasses set ``name`` and the capability flags below."""

    name: ClassVar[str] = "quantizer"
    #: The values of :meth:`split` are exactly +-1 (the engine stores them as bits).
    binary: ClassVar[bool] = True
    #: :meth:`split` also returns a per-output-channel scale (XNOR alpha).
    scaled: ClassVar[bool] = False
    #: Training samples (the output is random); eval uses ``sign`` unless ``stochastic_eval``.
    stochastic: ClassVar[bool] = False
    #: In eval mode the values equal ``sign(x)`` with ``sign(0) = +1``, so the packed engine
    #: reproduces them (a sign input folds into a threshold; a kernel packs into bits).
    exportable: ClassVar[bool] = True

    def __init__(self, stochastic_eval: bool = False) -> None:
        super().__init__()
        # Accepted by every quantizer so callers can pass one option set; only stochastic
        # quantizers use it.
        self.stochastic_eval = bool(stochastic_eval)

    @property
    def deterministic_eval(self) -> bool:
        """True when eval-mode output is a function of the input (no sampling)."""
        return not (self.stochastic and self.stochastic_eval)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(values, scale)`` with ``forward(x) == values * scale`` (scale None: no scale).

        Layers convolve with ``values`` and multiply the per-channel ``scale`` afterwards, so
        XNOR pre-activations are exactly ``alpha * (integer)`` in float32.
        """
        return self(x), None

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


_REGISTRY: dict[str, type[Quantizer]] = {}
Q = TypeVar("Q", bound=type[Quantizer])


def register_quantizer(cls: Q) -> Q:
    """Class decorator: make ``cls`` available as ``quant`` ``*_quantizer: <cls.name>``."""
    if cls.name in _REGISTRY:
        raise ValueError(f"quantizer {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


@register_quantizer
class SteSign(Quantizer):
    """Deterministic sign with clipped straight-through gradient."""

    name = "ste_sign"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return binarize_det(x)


@register_quantizer
class StochasticSign(Quantizer):
    """Stochastic sign in training (and in eval if ``stochastic_eval``), else deterministic."""

    name = "stoch_sign"
    stochastic = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or self.stochastic_eval:
            return binarize_stoch(x)
        return binarize_det(x)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, stochastic_eval={self.stochastic_eval}"


@register_quantizer
class ApproxSign(Quantizer):
    """Bi-Real Net's ApproxSign (Liu et al. 2018): forward ``sign``, backward ``2 - 2|x|`` on
    ``|x| <= 1`` (the derivative of a piecewise-quadratic approximation of sign)."""

    name = "approx_sign"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return binarize_approx(x)


@register_quantizer
class XnorWeight(Quantizer):
    """XNOR-Net weight quantizer: ``alpha * sign(W)``, alpha = mean(|W|) per output channel."""

    name = "xnor_weight"
    scaled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return xnor_binarize_weight(x)

    @property
    def deterministic_eval(self) -> bool:
        """True when eval-mode output is a function of the input (no sampling)."""
        return not (self.stochastic and self.stochastic_eval)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # alpha not detached: same gradient as forward(), the product is just reassociated.
        return binarize_det(x), channel_scale(x)

    @staticmethod
    def scale(w: torch.Tensor) -> torch.Tensor:
        """The per-output-channel ``alpha`` for weight ``w`` (shape broadcastable to ``w``)."""
        return channel_scale(w)


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
    return quantizer_class(name)(stochastic_eval=stochastic_eval)


def quantizer_class(name: str) -> type[Quantizer]:
    """The class registered as ``name`` (its capability flags, without building one)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown quantizer {name!r}; valid names: {', '.join(available_quantizers())} "
            "(or null for no quantization)"
        ) from None
