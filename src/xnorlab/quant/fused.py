"""Exact shortcuts for binarizing latent weights (the largest tensors of a BNN step).

At batch 100 a 1024 x 1024 weight is ten times the size of the activations it meets, so every
pass over it counts. Latent weights are clipped to [-1, 1] after each optimizer step, so the
STE mask ``|W| <= 1`` of their sign is almost always all ones, and ``grad * 1.0 == grad``
bitwise. :class:`WeightSignSTE` reads ``W`` once (:func:`bitmask.sign_bits`) for the sign, its
bits (what quant.lean stores if autograd saves the sign) and whether every ``|W| <= 1``; it then
passes the gradient through untouched, instead of building and applying the mask (three passes
and a weight-sized temporary) in backward. When some |W| > 1 it takes the standard path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .bitmask import sign_bits

__all__ = ["WeightSignSTE"]


class WeightSignSTE(torch.autograd.Function):
    """``(sign(W), bits of sign(W))`` with the clipped STE, for a leaf ``W`` (a latent weight);
    same gradients as ``SignSTE`` bit for bit. The bits are not differentiable."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, ste_mask: Callable):  # type: ignore[override]
        signs, bits, _, outside = sign_bits(w)
        ctx.inside = outside == 0
        ctx.ste_mask = ste_mask
        if not ctx.inside:
            ctx.save_for_backward(w)
        ctx.mark_non_differentiable(bits)
        ctx.set_materialize_grads(False)  # no zero tensor for the bits' (unused) gradient
        return signs, bits

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _bits_grad: None):  # type: ignore[override]
        if ctx.inside:
            return grad, None  # the mask is all ones: grad * 1.0 is grad itself
        (w,) = ctx.saved_tensors
        return ctx.ste_mask(w, grad), None
