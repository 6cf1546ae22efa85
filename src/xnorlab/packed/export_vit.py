"""Export a binarized :class:`~xnorlab.models.vit.ViT` (bnn, xnor, bc_det, bc_stoch) to a
version-2 graph.

Per block (pre-norm)::

    x -> layernorm -> binary_linear qkv (real) -> attention -> binary_linear proj (real)
      -> residual(x, ., gamma1) = x1
    x1 -> layernorm -> binary_linear mlp.0 (bits) -> binary_linear mlp.3 (real)
      -> residual(x1, ., gamma2)

framed by ``normalize -> patch_embed`` (+ position embedding) and ``layernorm -> mean_tokens
-> linear``. Each ``ScaledBinaryLinear`` computes ``F.linear(sign(x), sign(W)) * s + bias`` in
torch: the engine gets ``y`` exactly from XNOR-popcount and applies ``float32(y) * s + bias``
with ``s`` = XNOR's alpha or the fixed ``1/sqrt(K)`` rounded to float32, the same two roundings.

The first MLP linear's output is only ever seen through ``sign(GELU(.))`` (the second MLP
linear's input quantizer), a function of its integer ``y`` per channel: the exporter evaluates
torch's own ops on every ``y`` in ``[-K, K]`` and stores it as ``y >= thresh or y <= thresh_low``
(GELU underflows to -0.0 for inputs below about -5.5, whose sign is +1, hence the low band).

A BinaryConnect ViT (no input quantizer: real activations) has the same graph with every
``binary_linear`` a ``bc_linear`` (``F.linear(x, sign(W)) * s + bias`` as a float32 GEMM with
the +-1 weights), the first MLP linear's output being ``gelu`` (real) instead of bits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .bits import pack_bits
from .export import ExportError, _check_sign_input, _kernel_signs_and_alpha, default_metadata
from .graph import GraphEngine
from .nodes import (
    Attention,
    BCLinear,
    BinaryLinear,
    LayerNorm,
    Linear,
    MeanTokens,
    Node,
    Normalize,
    PatchEmbed,
    Residual,
    band_thresholds,
)

__all__ = ["export_vit", "gelu_sign_table", "is_vit"]


def is_vit(model: nn.Module) -> bool:
    from ..models.vit import ViT

    return isinstance(model, ViT)


def _f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().numpy().copy()


def _layernorm(name: str, src: str, ln: nn.LayerNorm) -> LayerNorm:
    if ln.weight is None or ln.bias is None or len(ln.normalized_shape) != 1:
        raise ExportError(f"{name}: LayerNorm needs an affine weight and bias over one axis")
    return LayerNorm(name, (src,), eps=float(ln.eps), weight=_f32(ln.weight), bias=_f32(ln.bias))


def _is_bc(layer: nn.Module) -> bool:
    """BinaryConnect: a binary kernel on real (unquantized) input."""
    return layer.input_quantizer is None


def _binary_parts(layer: nn.Module, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(packed +-1 weight, per-output float32 scale: XNOR's alpha or torch's out_scale)."""
    if not _is_bc(layer):
        _check_sign_input(layer, name)
    if layer.activation_scale:
        raise ExportError(f"{name}: activation_scale (XNOR beta) is not exported for the ViT")
    bits, alpha = _kernel_signs_and_alpha(layer)
    out_scale = float(layer.out_scale)
    if alpha is not None and out_scale != 1.0:
        raise ExportError(f"{name}: a scaled kernel with out_scale {out_scale} (two products)")
    n = bits.shape[0]
    scale = alpha.numpy().astype(np.float32) if alpha is not None else np.full(
        n, np.float32(out_scale))
    return pack_bits(bits.numpy()), scale


def _real_linear(name: str, src: str, layer: nn.Module,
                 gelu: bool = False) -> BinaryLinear | BCLinear:
    """A linear with real output: ``bc_linear`` on real input, else ``binary_linear``."""
    weight, scale = _binary_parts(layer, name)
    if _is_bc(layer):
        return BCLinear(name, (src,), in_features=layer.in_features, gelu=gelu, weight=weight,
                        scale=scale, bias=_f32(layer.bias))
    return BinaryLinear(name, (src,), in_features=layer.in_features, weight=weight, scale=scale,
                        bias=_f32(layer.bias))


@torch.no_grad()
def gelu_sign_table(layer: nn.Module, gelu: nn.Module, quantizer: nn.Module) -> np.ndarray:
    """bool (2K + 1, out): the next input bit ``quantizer(gelu(layer's output)) > 0`` for every
    ``y`` in ``[-K, K]`` (row ``y + K``), computed with the model's own torch ops in float32."""
    k = layer.in_features
    y = torch.arange(-k, k + 1, dtype=torch.float32)[:, None].expand(-1, layer.out_features)
    _, alpha = _kernel_signs_and_alpha(layer)
    out = y * alpha if alpha is not None else y
    out = out * layer.out_scale + layer.bias
    return (quantizer(gelu(out.contiguous())) > 0).numpy()


def _mlp_nodes(prefix: str, src: str, mlp: nn.Sequential) -> list[Node]:
    lin1, act, lin2 = mlp[0], mlp[1], mlp[3]
    if not isinstance(act, nn.GELU) or act.approximate != "none":
        raise ExportError(f"{prefix}: the MLP activation must be the exact (erf) GELU")
    if _is_bc(lin1) != _is_bc(lin2):
        raise ExportError(f"{prefix}: one MLP linear has real input, the other binary")
    if _is_bc(lin1):  # real GELU between two BinaryConnect linears
        first = _real_linear(f"{prefix}.0", src, lin1, gelu=True)
        return [first, _real_linear(f"{prefix}.3", first.name, lin2)]
    weight, _ = _binary_parts(lin1, f"{prefix}.0")
    q2 = _check_sign_input(lin2, f"{prefix}.3")
    table = gelu_sign_table(lin1, act, q2)
    band = band_thresholds(table, -lin1.in_features)
    if band is None:
        raise ExportError(f"{prefix}.0: sign(GELU(.)) is not a band of the pre-activation")
    first = BinaryLinear(f"{prefix}.0", (src,), in_features=lin1.in_features, weight=weight,
                         thresh=band[0], thresh_low=band[1])
    w2, s2 = _binary_parts(lin2, f"{prefix}.3")
    second = BinaryLinear(f"{prefix}.3", (first.name,), in_features=lin2.in_features,
                          real_input=False, weight=w2, scale=s2, bias=_f32(lin2.bias))
    return [first, second]


def _block_nodes(i: int, src: str, block: nn.Module) -> tuple[list[Node], str]:
    p = f"blocks.{i}"
    attn = block.attn
    nodes: list[Node] = [
        _layernorm(f"{p}.norm1", src, block.norm1),
        _real_linear(f"{p}.attn.qkv", f"{p}.norm1", attn.qkv),
        Attention(f"{p}.attn", (f"{p}.attn.qkv",), heads=attn.heads),
        _real_linear(f"{p}.attn.proj", f"{p}.attn", attn.proj),
        Residual(f"{p}.res1", (src, f"{p}.attn.proj"), gamma=_f32(block.gamma1)),
        _layernorm(f"{p}.norm2", f"{p}.res1", block.norm2),
    ]
    nodes += _mlp_nodes(f"{p}.mlp", f"{p}.norm2", block.mlp)
    nodes.append(Residual(f"{p}.res2", (f"{p}.res1", f"{p}.mlp.3"), gamma=_f32(block.gamma2)))
    return nodes, f"{p}.res2"


def vit_nodes(model: nn.Module, input_shape: tuple[int, ...]) -> list[Node]:
    """The graph nodes of ``model`` (see the module docstring)."""
    if model.cls_token is not None or model.pool != "mean":
        raise ExportError("only the mean-pooled ViT (pool=mean) is exported")
    c = input_shape[0]
    mean = np.broadcast_to(_f32(model.normalize.mean).reshape(-1), (c,))
    std = np.broadcast_to(_f32(model.normalize.std).reshape(-1), (c,))
    pe = model.patch_embed
    d = pe.out_channels
    nodes: list[Node] = [
        Normalize("normalize", ("input",), mean=mean, std=std),
        PatchEmbed("patch_embed", ("normalize",), patch=pe.kernel_size[0],
                   weight=_f32(pe.weight).reshape(d, -1), bias=_f32(pe.bias),
                   pos=_f32(model.pos_embed)[0]),
    ]
    if pe.kernel_size[0] != pe.kernel_size[1] or pe.stride != pe.kernel_size or pe.padding != (
            0, 0):
        raise ExportError("patch embedding must be a square conv with stride = kernel, no pad")
    src = "patch_embed"
    for i, block in enumerate(model.blocks):
        block_nodes, src = _block_nodes(i, src, block)
        nodes += block_nodes
    nodes += [
        _layernorm("norm", src, model.norm),
        MeanTokens("pool", ("norm",)),
        Linear("head", ("pool",), weight=_f32(model.head.weight), bias=_f32(model.head.bias)),
    ]
    return nodes


def export_vit(
    model: nn.Module, input_shape: tuple[int, ...], *, metadata: dict[str, Any] | None = None,
    **engine_kwargs: Any,
) -> GraphEngine:
    """A :class:`GraphEngine` running ``model`` (evaluated in eval mode)."""
    was_training = model.training
    model.eval()
    try:
        nodes = vit_nodes(model, tuple(int(d) for d in input_shape))
    finally:
        model.train(was_training)
    meta = default_metadata()
    meta.update(metadata or {})
    try:
        return GraphEngine(nodes, tuple(input_shape), metadata=meta, **engine_kwargs)
    except ValueError as e:
        raise ExportError(f"the ViT does not make a valid graph: {e}") from None
