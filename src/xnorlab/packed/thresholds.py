"""BatchNorm + sign folded into integer thresholds: bisection over a monotone predicate.

A hidden layer's output bit for channel ``c`` is ``fire(y)[c]`` for its exact integer
pre-activation ``y`` (the exporter builds ``fire`` from the torch model's own ops). Each op is
monotone, so per channel the bit is ``y >= t`` (increasing) or ``y <= t`` (decreasing:
``flip``), or constant; :func:`derive_thresholds` finds ``t`` by bisection and
:func:`verify_thresholds` re-evaluates the range (or a bounded sample of it) to confirm.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .layers import THRESH_MAX, THRESH_MIN

__all__ = ["VERIFY_BUDGET", "ThresholdError", "derive_thresholds", "verify_thresholds"]

#: Max number of (candidate, channel) evaluations of the full-range verification per layer.
VERIFY_BUDGET = 1 << 26

Fire = Callable[[torch.Tensor], torch.Tensor]


class ThresholdError(ValueError):
    """A channel's output bit is not a threshold function of its pre-activation."""


def derive_thresholds(fire: Fire, channels: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Thresholds of a monotone per-channel predicate on the integers ``[lo, hi]``.

    ``fire(y)`` takes an int64 tensor of shape (L, channels) (candidate pre-activations, one
    column per channel) and returns a bool tensor of the same shape. Returns ``(thresh int32,
    flip bool)`` such that ``fire(y) == (y >= thresh)`` (``y <= thresh`` where ``flip``) on
    ``[lo, hi]``, with :data:`THRESH_MIN`/:data:`THRESH_MAX` for constant channels.
    """
    if lo >= hi:
        raise ValueError("need lo < hi")
    lo_t = torch.full((1, channels), lo, dtype=torch.int64)
    hi_t = torch.full((1, channels), hi, dtype=torch.int64)
    b_lo = fire(lo_t)[0].clone()
    b_hi = fire(hi_t)[0].clone()
    inc = ~b_lo & b_hi  # fires from some y on: smallest firing y
    dec = b_lo & ~b_hi  # fires up to some y: largest firing y (flip)
    lo_v, hi_v = lo_t[0].clone(), hi_t[0].clone()  # inc: fire(lo_v)=0, fire(hi_v)=1; dec: reverse
    while bool(((hi_v - lo_v) > 1).any()):
        mid = torch.div(lo_v + hi_v, 2, rounding_mode="floor")
        b = fire(mid[None])[0]
        go_hi = torch.where(inc, b, ~b)  # move the "1 side" (inc) / the "0 side" (dec) down
        hi_v = torch.where(go_hi, mid, hi_v)
        lo_v = torch.where(go_hi, lo_v, mid)
    thresh = np.full(channels, THRESH_MAX, dtype=np.int64)  # constant 0 (flip False)
    flip = np.zeros(channels, dtype=np.bool_)
    inc_n, dec_n = inc.numpy(), dec.numpy()
    thresh[inc_n] = hi_v.numpy()[inc_n]
    thresh[dec_n] = lo_v.numpy()[dec_n]
    flip[dec_n] = True
    thresh[(b_lo & b_hi).numpy()] = THRESH_MIN  # constant 1
    return thresh.astype(np.int32), flip


def verify_thresholds(
    fire: Fire, thresh: np.ndarray, flip: np.ndarray, lo: int, hi: int, what: str
) -> None:
    """Re-evaluate ``fire`` on the whole range (or a bounded sample) against the thresholds;
    raises :class:`ThresholdError` naming ``what`` and the first disagreeing channel."""
    c = thresh.shape[0]
    n = hi - lo + 1
    if n * c <= VERIFY_BUDGET:
        ys = np.arange(lo, hi + 1, dtype=np.int64)
    else:  # wide first layers: every threshold's neighbourhood + an even sample
        near = np.concatenate([thresh.astype(np.int64) + d for d in (-2, -1, 0, 1, 2)])
        sample = np.linspace(lo, hi, num=max(2, VERIFY_BUDGET // (8 * c)), dtype=np.int64)
        ys = np.unique(np.clip(np.concatenate([near, sample]), lo, hi))
    t = thresh.astype(np.int64)[None]
    step = max(1, (1 << 22) // c)
    for i in range(0, ys.size, step):
        y = ys[i : i + step, None]
        want = np.where(flip[None], y <= t, y >= t)
        got = fire(torch.from_numpy(np.ascontiguousarray(np.broadcast_to(y, (y.shape[0], c)))))
        bad = np.argwhere(got.numpy() != want)
        if bad.size:
            r, ch = bad[0]
            raise ThresholdError(
                f"{what}: channel {ch} is not a threshold function of the pre-activation "
                f"(y={int(ys[i + r])}); cannot export bit-exactly"
            )
