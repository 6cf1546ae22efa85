"""Exact shortcuts for binarizing latent weights (the largest tensors of a BNN step).

At batch 100 a 1024 x 1024 weight is ten times the size of the activations it meets, so every
pass over it counts. Latent weights are clipped to [-1, 1] after each optimizer step, so the
STE mask ``|W| <= 1`` of their sign is almost always all ones, and ``grad * 1.0 == grad``
bitwise. :class:`WeightSignSTE` checks that with one ``aminmax`` pass in forward and then passes
the gradient through untouched, instead of building and applying the mask (three passes and a
weight-sized temporary) in backward; when some |W| > 1 it takes the standard path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["WeightSignSTE"]


class WeightSignSTE(torch.autograd.Function):
    """``sign(W)`` with the clipped STE, for a leaf ``W`` (a latent weight); same gradients as
    ``SignSTE`` bit for bit."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, sign: Callable, ste_mask: Callable):  # type: ignore[override]
        lo, hi = w.aminmax()
        ctx.inside = bool(lo >= -1) and bool(hi <= 1)
        ctx.ste_mask = ste_mask
        if not ctx.inside:
            ctx.save_for_backward(w)
        return sign(w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        if ctx.inside:
            return grad, None, None  # the mask is all ones: grad * 1.0 is grad itself
        (w,) = ctx.saved_tensors
        return ctx.ste_mask(w, grad), None, None
