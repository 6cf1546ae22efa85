"""Binary layers (larq style: each layer quantizes its own input and kernel).

* The latent float weight stays in ``.weight``; ``forward`` uses the quantized kernel.
* ``input_quantizer=None`` means the layer takes real input (first layer: 8-bit pixels).
* ``bias`` defaults to ``False`` when the kernel is binarized (a BatchNorm follows) and to ``True``
  otherwise; pass it explicitly to override.
* :class:`BinaryConv2d` with a quantized input pads the *quantized* input with +1
  (``pad_value = 1.0``, larq's ``pad_values=1``) and convolves with padding 0, so every input
  the kernel sees is +-1 and the bit-packed engine reproduces it exactly. With real input the
  padding is the ordinary zero padding.
* A scaled kernel quantizer (``xnor_weight``) is applied as ``alpha * op(x, sign(W))``: the
  conv/matmul sees only +-1 weights and the per-output-channel ``alpha`` multiplies its output
  (then the bias, if any), so pre-activations are exactly ``float32(alpha) * integer``.
* ``activation_scale=True`` (XNOR-Net's beta/K, only with a quantized input) multiplies the output
  by the mean absolute value of the *real* input over the receptive field: per sample for
  ``BinaryLinear``; for ``BinaryConv2d`` the channel mean of ``|x|`` averaged over each kernel
  window (zero-padded, as in XNOR-Net). It is off by default and is not bit-exportable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import lean, xnor_linear
from .registry import Quantizer, get_quantizer

__all__ = [
    "BinaryConv2d",
    "BinaryLinear",
    "Normalize",
    "Quantize8bit",
    "clip_latent_weights",
    "glorot_lr_scale",
    "init_latent_uniform",
    "is_binary_layer",
]

QuantizerSpec = str | Quantizer | None


class _BinaryMixin:
    """Shared quantizer handling for BinaryLinear / BinaryConv2d."""

    weight: nn.Parameter
    input_quantizer: Quantizer | None
    kernel_quantizer: Quantizer | None

    def _init_quantizers(
        self,
        input_quantizer: QuantizerSpec,
        kernel_quantizer: QuantizerSpec,
        stochastic_eval: bool,
        activation_scale: bool,
    ) -> None:
        self.input_quantizer = get_quantizer(input_quantizer, stochastic_eval=stochastic_eval)
        self.kernel_quantizer = get_quantizer(kernel_quantizer, stochastic_eval=stochastic_eval)
        if activation_scale and self.input_quantizer is None:
            raise ValueError("activation_scale needs a quantized input (input_quantizer)")
        self.activation_scale = bool(activation_scale)

    @property
    def binary_input(self) -> bool:
        """True if the layer binarizes its input."""
        return self.input_quantizer is not None

    @property
    def binary_kernel(self) -> bool:
        """True if the layer binarizes its kernel (possibly with an XNOR scale)."""
        return self.kernel_quantizer is not None

    def quantized_weight(self) -> torch.Tensor:
        """The effective weight of ``forward`` (latent weight if the kernel is not quantized).

        For a scaled kernel (XNOR) ``forward`` computes ``alpha * op(x, sign(W))`` rather than
        ``op(x, alpha * sign(W))``: equal up to float rounding, and exactly ``alpha * integer``.
        """
        if self.kernel_quantizer is None:
            return self.weight
        return self.kernel_quantizer(self.weight)

    def _quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.input_quantizer is None else self.input_quantizer(x)

    def _mark_integer(
        self, x: torch.Tensor, out: torch.Tensor, fan_in: int, with_bias: bool
    ) -> torch.Tensor:
        """Mark for quant.lean a +-1 kernel's product with a +-1 or integer input ``x``: an
        integer of size <= fan_in * max|x|."""
        if not lean.active() or not self.binary_kernel or with_bias:
            return out
        bound = 1 if self.binary_input else lean.int_bound(x)
        if bound is not None:
            lean.mark_int(out, -fan_in * bound, fan_in * bound)
        return out

    def _kernel(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(kernel used by the linear op, per-output-channel scale applied after it or None)."""
        if self.kernel_quantizer is None:
            return self.weight, None
        return self.kernel_quantizer.split(self.weight)


def _default_bias(bias: bool | None, kernel_quantizer: QuantizerSpec) -> bool:
    if bias is not None:
        return bool(bias)
    return get_quantizer(kernel_quantizer) is None


class BinaryLinear(_BinaryMixin, nn.Linear):
    """``nn.Linear`` that quantizes its input and/or kernel.

    Args:
        input_quantizer: registered quantizer name (e.g. ``"ste_sign"``), a quantizer, or None.
        kernel_quantizer: same, for the weight.
        bias: None = no bias when the kernel is quantized, bias otherwise.
        stochastic_eval: keep stochastic quantizers stochastic in eval mode.
        activation_scale: XNOR-Net beta, see the module docstring.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool | None = None,
        input_quantizer: QuantizerSpec = None,
        kernel_quantizer: QuantizerSpec = None,
        *,
        stochastic_eval: bool = False,
        activation_scale: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_features,
            out_features,
            bias=_default_bias(bias, kernel_quantizer),
            device=device,
            dtype=dtype,
        )
        self._init_quantizers(input_quantizer, kernel_quantizer, stochastic_eval, activation_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, scale = self._kernel()
        xq = self._quantize_input(x)
        if scale is None and not self.activation_scale:
            out = F.linear(xq, w, self.bias) if self.bias is not None else xnor_linear.linear(xq, w)
            return self._mark_integer(x, out, self.in_features, self.bias is not None)
        out = self._mark_integer(x, xnor_linear.linear(xq, w), self.in_features, False)
        if scale is not None:
            out = out * scale.reshape(-1)
        if self.activation_scale:
            out = out * x.abs().mean(dim=-1, keepdim=True)
        return out if self.bias is None else out + self.bias


class BinaryConv2d(_BinaryMixin, nn.Conv2d):
    """``nn.Conv2d`` that quantizes its input and/or kernel; pads quantized input with +1.

    Args: as :class:`BinaryLinear`, plus the usual ``nn.Conv2d`` arguments. With a quantized
    input only ``padding_mode="zeros"`` is accepted (the pad value is then +1, see ``pad_value``).
    """

    #: Value used to pad a *quantized* input (+1: bit 1). Real input is zero-padded.
    pad_value: float = 1.0

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool | None = None,
        padding_mode: str = "zeros",
        input_quantizer: QuantizerSpec = None,
        kernel_quantizer: QuantizerSpec = None,
        *,
        stochastic_eval: bool = False,
        activation_scale: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=_default_bias(bias, kernel_quantizer),
            padding_mode=padding_mode,
            device=device,
            dtype=dtype,
        )
        self._init_quantizers(input_quantizer, kernel_quantizer, stochastic_eval, activation_scale)
        if self.input_quantizer is not None and padding_mode != "zeros":
            raise ValueError(
                "BinaryConv2d with a quantized input supports padding_mode='zeros' only"
            )
        if self.activation_scale and self.dilation != (1, 1):
            raise ValueError("activation_scale supports dilation=1 only")

    @property
    def pad_amounts(self) -> tuple[int, int, int, int]:
        """Explicit padding as ``(left, right, top, bottom)`` (``F.pad`` order)."""
        # nn.Conv2d precomputes this for int, tuple and "same" padding alike.
        return tuple(self._reversed_padding_repeated_twice)  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, scale = self._kernel()
        post = scale is not None or self.activation_scale
        bias = None if post else self.bias
        if self.input_quantizer is None:
            out = self._conv_forward(x, w, bias)  # real input: ordinary (zero) padding
            fan_in = w.shape[1] * w.shape[2] * w.shape[3]
            out = self._mark_integer(x, out, fan_in, bias is not None)
        else:
            xq = self.input_quantizer(x)
            pad = self.pad_amounts
            if any(pad):
                # Zero is not a +-1 value: pad the binarized input with +1 (bit 1) instead.
                xq = lean.mark_pm1(F.pad(xq, pad, value=self.pad_value)) if lean.active() else (
                    F.pad(xq, pad, value=self.pad_value))
            out = F.conv2d(xq, w, bias, self.stride, 0, self.dilation, self.groups)
            fan_in = w.shape[1] * w.shape[2] * w.shape[3]
            out = self._mark_integer(x, out, fan_in, bias is not None)
        if not post:
            return out
        if scale is not None:
            out = out * scale.reshape(1, -1, 1, 1)
        if self.activation_scale:
            a = F.pad(x.abs().mean(dim=1, keepdim=True), self.pad_amounts)
            out = out * F.avg_pool2d(a, self.kernel_size, self.stride)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


class Quantize8bit(nn.Module):
    """First module of binarized models: ``round(x * 255)`` for ``x`` in [0, 1].

    Gives the BNN paper's real-valued 8-bit input, so the first layer's pre-activations
    (integer pixels times +-1 weights) are exact integers in float32.
    """

    scale: float = 255.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Marked for quant.lean: saved as uint8 when in 0..255 (checked when packed).
        return lean.mark_int(torch.round(x * self.scale), 0, 255)


class Normalize(nn.Module):
    """First module of float models: ``(x - mean) / std`` per channel (NCHW input).

    ``mean`` and ``std`` are scalars or per-channel sequences; stored as buffers of shape
    ``(1, C, 1, 1)`` (C = 1 for a scalar).
    """

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        super().__init__()
        m = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        s = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        if (s <= 0).any():
            raise ValueError("std must be positive")
        self.register_buffer("mean", m)
        self.register_buffer("std", s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def is_binary_layer(m: nn.Module) -> bool:
    """True for :class:`BinaryLinear` / :class:`BinaryConv2d` (whatever their quantizers)."""
    return isinstance(m, BinaryLinear | BinaryConv2d)


@torch.no_grad()
def clip_latent_weights(model: nn.Module, bound: float = 1.0) -> int:
    """Clamp, in place, the latent weights of binary-kernel layers to ``[-bound, bound]``.

    Call after each optimizer step (BinaryConnect / BNN). Layers without a kernel quantizer are
    left alone. Returns the number of layers clipped.
    """
    n = 0
    for m in model.modules():
        if is_binary_layer(m) and m.kernel_quantizer is not None:
            m.weight.clamp_(-bound, bound)
            n += 1
    return n


@torch.no_grad()
def init_latent_uniform(model: nn.Module, bound: float = 1.0) -> int:
    """Re-initialise latent weights of binary-kernel layers uniformly in ``[-bound, bound]``.

    Optional: the BinaryConnect/BNN Theano code initialises latent weights as U(-H, H) with
    H = 1 (and scales each layer's learning rate by :func:`glorot_lr_scale`). PyTorch's default
    init (|w| <= 1/sqrt(fan_in)) makes stochastic binarization almost pure noise at the start.
    Returns the number of layers re-initialised.
    """
    n = 0
    for m in model.modules():
        if is_binary_layer(m) and m.kernel_quantizer is not None:
            nn.init.uniform_(m.weight, -bound, bound)
            n += 1
    return n


def glorot_lr_scale(layer: nn.Module) -> float:
    """BinaryConnect's per-layer learning-rate factor ``1 / sqrt(1.5 / (fan_in + fan_out))``
    (Glorot), for use with latent weights initialised by :func:`init_latent_uniform`."""
    w = layer.weight
    receptive = w[0, 0].numel() if w.dim() > 2 else 1
    fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
    return float((1.5 / (fan_in + fan_out)) ** -0.5)
