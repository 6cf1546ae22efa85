"""Small pre-norm Vision Transformer, float or with binarized linear layers.

What is binarized (per the quant config): the attention QKV and output projections and both
MLP linears of every encoder block are :class:`~xnorlab.quant.layers.BinaryLinear` layers
(binary kernel, and binary input for BNN/XNOR). What stays real: the input normalization, the
patch embedding (a strided conv), class token and position embeddings, every LayerNorm, the
softmax attention itself (the product of binarized Q and K is real), the residual stream, GELU,
and the classification head.

Binary projections keep their (real) bias since no BatchNorm follows them. A +-1 kernel without
a scale (BinaryConnect / BNN quantizers) has outputs of order ``sqrt(in_features)``, which
saturates the softmax; :class:`ScaledBinaryLinear` multiplies such outputs by the fixed constant
``1 / sqrt(in_features)`` (XNOR's per-channel alpha plays that role by itself).

Residual branches carry LayerScale gains (``layer_scale_init``, default 0.1) and the default
pooling is the token mean: with stochastic binary weights the attention is mostly noise early in
training, and a class token (which only sees the patches through attention) then cannot learn,
while mean pooling keeps a direct path from patches to the head.

The input is always normalized (``Normalize``), also for binarized quants: 0..255 pixels would
swamp the real residual stream. Binarized (bnn, xnor) ViTs with mean pooling export to the
packed engine as a format-2 graph (:mod:`xnorlab.packed.export_vit`): the binary linears run as
XNOR-popcount GEMMs, everything listed above as real stays float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..quant.config import QuantConfig
from ..quant.layers import BinaryLinear, Normalize
from .config import ViTConfig

__all__ = ["ScaledBinaryLinear", "ViT", "build_vit"]


class ScaledBinaryLinear(BinaryLinear):
    """BinaryLinear whose output is multiplied by ``1/sqrt(in_features)`` when the kernel is
    binarized without its own scale (1 otherwise)."""

    def __init__(self, in_features: int, out_features: int, **kwargs) -> None:
        super().__init__(in_features, out_features, bias=True, **kwargs)
        kq = self.kernel_quantizer
        unscaled_binary = kq is not None and not getattr(kq, "scaled", False)
        self.out_scale = 1.0 / math.sqrt(in_features) if unscaled_binary else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, scale = self._kernel()
        out = F.linear(self._quantize_input(x), w)
        if scale is not None:
            out = out * scale.reshape(-1)
        if self.activation_scale:
            out = out * x.abs().mean(dim=-1, keepdim=True)
        # Scale before the bias so the bias keeps its usual magnitude.
        return out * self.out_scale + self.bias


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, quant: QuantConfig, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.qkv = ScaledBinaryLinear(dim, 3 * dim, **quant.layer_kwargs(False))
        self.proj = ScaledBinaryLinear(dim, dim, **quant.layer_kwargs(False))
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], dropout_p=p)
        return self.proj(y.transpose(1, 2).reshape(n, t, d))


class _Block(nn.Module):
    def __init__(self, cfg: ViTConfig, quant: QuantConfig) -> None:
        super().__init__()
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.attn = _Attention(cfg.dim, cfg.heads, quant, cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.dim)
        # LayerScale (CaiT): per-channel gains on the residual branches. A small start keeps
        # the noise of (stochastic) binary branches from swamping the real residual stream.
        self.gamma1 = nn.Parameter(torch.full((cfg.dim,), cfg.layer_scale_init))
        self.gamma2 = nn.Parameter(torch.full((cfg.dim,), cfg.layer_scale_init))
        self.mlp = nn.Sequential(
            ScaledBinaryLinear(cfg.dim, hidden, **quant.layer_kwargs(False)),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            ScaledBinaryLinear(hidden, cfg.dim, **quant.layer_kwargs(False)),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.gamma1 * self.attn(self.norm1(x))
        return x + self.gamma2 * self.mlp(self.norm2(x))


class ViT(nn.Module):
    """Patch embedding -> [cls] + position embedding -> pre-norm blocks -> LayerNorm -> head."""

    def __init__(
        self,
        cfg: ViTConfig,
        quant: QuantConfig,
        input_shape: Sequence[int],
        num_classes: int,
        mean: float | Sequence[float] = 0.0,
        std: float | Sequence[float] = 1.0,
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        if cfg.pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {cfg.pool!r}")
        ps = cfg.patch_size
        n_patches = (h // ps) * (w // ps)  # the strided conv drops any remainder
        if n_patches == 0:
            raise ValueError(f"patch_size {ps} larger than the {h}x{w} input")
        self.pool = cfg.pool
        self.normalize = Normalize(mean, std)
        self.patch_embed = nn.Conv2d(c, cfg.dim, ps, stride=ps)
        n_tokens = n_patches + (1 if cfg.pool == "cls" else 0)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim)) if cfg.pool == "cls" else None
        self.pos_embed = nn.Parameter(torch.randn(1, n_tokens, cfg.dim) * 0.02)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.Sequential(*[_Block(cfg, quant) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(self.normalize(x)).flatten(2).transpose(1, 2)  # (N, T, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.blocks(self.dropout(x + self.pos_embed))
        x = self.norm(x)
        x = x[:, 0] if self.pool == "cls" else x.mean(dim=1)
        return self.head(x)


def build_vit(
    cfg: ViTConfig,
    quant: QuantConfig,
    input_shape: Sequence[int],
    num_classes: int,
    mean: float | Sequence[float] = 0.0,
    std: float | Sequence[float] = 1.0,
) -> ViT:
    """Build a :class:`ViT` (see the module docstring for what is binarized)."""
    return ViT(cfg, quant, input_shape, num_classes, mean, std)
