"""Lean binary backward: tensors saved for backward stored losslessly in fewer bits.

What a binary layer's backward needs is known exactly:

* the layer's input ``sign(x)`` is +-1: 1 bit per value (``pm1``);
* the straight-through mask ``|x| <= 1`` of the sign: 1 bit per value (saved by
  :class:`LeanSignSTE` instead of the float ``x``);
* the output of a +-1 x +-1 linear/conv (what BatchNorm saves) is an integer with
  ``|v| <= fan_in``: int8 / int16 when that bound fits; the 8-bit input image is a uint8.

Layers *mark* the tensors they produce (``mark``, a no-op outside a lean forward). While a lean
forward runs, a ``saved_tensors_hooks`` pair packs every marked tensor autograd saves (views of
a marked tensor included) and passes everything else through. Unpacking rebuilds the same
values with the same strides, so the backward ops compute exactly what they would have computed
from the float32 originals: gradients are bit-identical (tests/quant/test_lean.py checks it).

``install(model)`` makes a model's training forwards lean (forward hooks on the root module).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .bitmask import masked_grad, pack_positive, pack_unit_mask, sign_bits, unpack_pm1

__all__ = [
    "LeanSaving",
    "LeanSignSTE",
    "active",
    "install",
    "int_bound",
    "is_installed",
    "lean_sign",
    "mark_int",
    "mark_pm1",
    "pm1_bits",
    "set_observer",
]

_state = threading.local()


def _registry() -> dict[int, _Mark] | None:
    return getattr(_state, "registry", None)


def active() -> bool:
    """True inside a lean forward (a :class:`LeanSaving` block with grad enabled)."""
    return _registry() is not None and torch.is_grad_enabled()


@dataclass
class _Mark:
    ref: weakref.ref
    kind: str  # "pm1" or "int"
    low: int = 0
    high: int = 0
    packed: object = None  # cached payload: a tensor saved twice is packed once


def _whole_storage(t: torch.Tensor) -> bool:
    # Views of such a tensor address only its own elements: rebuilt from it, they are exact.
    return (t.is_contiguous() and t.storage_offset() == 0
            and t.numel() * t.element_size() == t.untyped_storage().nbytes())


def _mark(t: torch.Tensor, kind: str, low: int = 0, high: int = 0,
          bits: torch.Tensor | None = None) -> torch.Tensor:
    reg = _registry()
    if reg is not None and t.dtype == torch.float32 and _whole_storage(t):
        mark = _Mark(weakref.ref(t), kind, low, high)
        if bits is not None:
            mark.packed = _Packed(t, mark, bits)
        reg[t.untyped_storage().data_ptr()] = mark
    return t


def mark_pm1(t: torch.Tensor, bits: torch.Tensor | None = None) -> torch.Tensor:
    """Declare that ``t`` holds only +-1 (stored as 1 bit if autograd saves it). ``bits``:
    ``t``'s signs already packed (``bitmask.pack_positive(t)``), when the binarizer made them."""
    return _mark(t, "pm1", bits=bits)


#: float32 holds every integer below this exactly (and sums of them stay exact).
EXACT_INT = 2**24


def mark_int(t: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """Declare that ``t`` holds integers in ``[low, high]``: stored in the smallest of uint8 /
    int8 / int16 that holds the values it actually has, else as it is. Bounds beyond float32's
    exact integers (2^24) are not marked."""
    if max(abs(low), abs(high)) >= EXACT_INT:
        return t
    return _mark(t, "int", low, high)


def pm1_bits(t: torch.Tensor) -> torch.Tensor | None:
    """The packed signs of ``t`` (``bitmask.pack_positive(t)``) if ``t`` is a whole +-1
    tensor marked with its bits (by its binarizer) in this lean forward; else None."""
    reg = _registry()
    entry = reg.get(t.untyped_storage().data_ptr()) if reg else None
    if (entry is None or entry.kind != "pm1" or entry.packed is None
            or entry.ref() is None or not _whole_storage(t) or t.dtype != torch.float32):
        return None
    return entry.packed.data


def int_bound(t: torch.Tensor) -> int | None:
    """The largest ``|value|`` a marked tensor (or a view of one) may hold; None if unmarked."""
    reg = _registry()
    entry = reg.get(t.untyped_storage().data_ptr()) if reg else None
    if entry is None or entry.ref() is None:
        return None
    return 1 if entry.kind == "pm1" else max(abs(entry.low), abs(entry.high))


def _int_dtype(low: int, high: int) -> torch.dtype | None:
    if low >= 0 and high <= 255:
        return torch.uint8
    if low >= -128 and high <= 127:
        return torch.int8
    if low >= -32768 and high <= 32767:
        return torch.int16
    return None


class _Packed:
    """A marked tensor in its compact form, plus the view autograd saved of it."""

    __slots__ = ("data", "kind", "base_shape")

    def __init__(self, base: torch.Tensor, mark: _Mark, bits: torch.Tensor | None = None) -> None:
        self.kind, self.base_shape = mark.kind, base.shape
        if mark.kind == "pm1":
            self.data = pack_positive(base) if bits is None else bits
        else:
            # The values decide the dtype (a first layer's sums of pixels usually fit int16
            # though its bound does not); a value outside the promise costs memory, never
            # exactness.
            lo, hi = (int(v) for v in base.aminmax())
            dtype = _int_dtype(lo, hi)
            if dtype is None or lo < mark.low or hi > mark.high:
                self.kind, self.data = "raw", base
            else:
                self.data = base.to(dtype)

    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    def unpack(self, size: torch.Size, stride: tuple[int, ...], offset: int) -> torch.Tensor:
        if self.kind == "raw":
            base = self.data
        elif self.kind == "pm1":
            base = unpack_pm1(self.data, self.base_shape)
        else:
            base = self.data.to(torch.float32)
        return base.as_strided(size, stride, offset)


def set_observer(fn: Callable[[torch.Tensor, object, int], None] | None) -> None:
    """Call ``fn(saved, payload, nbytes)`` for every tensor a lean forward saves (measuring)."""
    _state.observer = fn


def _pack(t: torch.Tensor) -> object:
    reg = _registry()
    entry = reg.get(t.untyped_storage().data_ptr()) if reg else None
    base = entry.ref() if entry is not None else None
    # A live base of the same storage: the memory cannot have been reused since marking.
    if base is None or t.dtype != base.dtype:
        payload, nbytes = t, None
    else:
        if entry.packed is None:
            entry.packed = _Packed(base, entry)
        p = entry.packed
        payload = _View(p, t.size(), t.stride(), t.storage_offset())
        nbytes = p.nbytes()
    obs = getattr(_state, "observer", None)
    if obs is not None:
        obs(t, payload, nbytes)
    return payload


class _View:
    __slots__ = ("packed", "size", "stride", "offset")

    def __init__(self, packed: _Packed, size, stride, offset: int) -> None:
        self.packed, self.size, self.stride, self.offset = packed, size, stride, offset

    def unpack(self) -> torch.Tensor:
        return self.packed.unpack(self.size, self.stride, self.offset)


def _unpack(payload: object) -> torch.Tensor:
    return payload.unpack() if isinstance(payload, _View) else payload  # type: ignore[return-value]


class LeanSaving:
    """Context: marked tensors saved for backward are stored packed (see the module doc)."""

    def __enter__(self) -> LeanSaving:
        self._outer = _registry()
        _state.registry = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(_pack, _unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)
        _state.registry = self._outer


class LeanSignSTE(torch.autograd.Function):
    """``SignSTE`` / ``StochasticSignSTE`` saving the straight-through mask ``|x| <= 1`` as
    bits instead of ``x``. ``binarize(x)`` computes the forward value (without autograd);
    None is the deterministic sign, made in the same pass as its bits and the mask."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, binarize: Callable | None) -> torch.Tensor:  # type: ignore[override]
        if binarize is None:
            signs, bits, mask, _ = sign_bits(x)
            ctx.save_for_backward(mask)
            return mark_pm1(signs, bits)
        ctx.save_for_backward(pack_unit_mask(x))
        return mark_pm1(binarize(x))

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (bits,) = ctx.saved_tensors
        # The same product as binarizers._ste_mask, on the same 0/1 values: bit-identical.
        return masked_grad(grad_out, bits), None


def lean_sign(x: torch.Tensor, binarize: Callable | None = None) -> torch.Tensor | None:
    """``binarize(x)`` with a bit-packed STE mask, or None when the standard path applies.
    ``binarize=None``: the deterministic sign (``binarizers.sign``).

    A leaf ``x`` (a latent weight) keeps the standard path, which saves the parameter itself
    (no extra memory); its +-1 output is marked so that a saved copy is stored as bits.
    """
    if not active() or x.grad_fn is None:
        return None
    return LeanSignSTE.apply(x, binarize)


def _enter(module: nn.Module, args: object) -> None:
    if module.training and torch.is_grad_enabled():
        ctx = LeanSaving()
        ctx.__enter__()
        module.__dict__.setdefault("_lean_stack", []).append(ctx)
    else:
        module.__dict__.setdefault("_lean_stack", []).append(None)


def _exit(module: nn.Module, args: object, output: object) -> None:
    ctx = module.__dict__["_lean_stack"].pop()
    if ctx is not None:
        ctx.__exit__(None, None, None)


def install(model: nn.Module) -> nn.Module:
    """Make ``model``'s training forwards lean (idempotent); returns ``model``."""
    if not is_installed(model):
        model.register_forward_pre_hook(_enter)
        model.register_forward_hook(_exit, always_call=True)
        model.__dict__["_lean_installed"] = True
    return model


def is_installed(model: nn.Module) -> bool:
    """True if :func:`install` was applied to ``model``."""
    return bool(model.__dict__.get("_lean_installed", False))
