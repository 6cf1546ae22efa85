"""Training memory measured truly: what one training step of a network holds, by kind.

``peak_rss_mb`` of a run measures the Python runtime and the dataset, not the model. This
module counts the model's own bytes instead, for one training step (forward, backward, Adam):

* parameters, gradients and optimizer state (tensor bytes);
* tensors saved for backward, counted with ``torch.autograd.graph.saved_tensors_hooks``, shared
  storages counted once and parameters (already counted) left out; under ``quant.lean_backward``
  the bytes of the packed forms (see :mod:`xnorlab.quant.lean`);
* the step's peak: the largest rise of the C heap (glibc ``mallinfo2``, where torch's CPU
  tensors live) above its level before the step, read after every op;
* as a cross-check, the rise of RSS above the level before the step (memory-profiler), with
  the C heap's free pages first given back to the OS (``malloc_trim``): otherwise a process
  that ran a bigger step before reuses its pages and the rise reads 0.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from xnorlab.quant import lean

__all__ = ["HeapPeak", "heap_bytes", "saved_tensor_bytes", "step_memory", "train_mem_metrics"]


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _libc() -> Any:
    lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not hasattr(lib, "mallinfo2"):
        return None
    lib.mallinfo2.restype = _MallInfo2
    return lib


_LIBC = _libc()


def heap_bytes() -> int:
    """Bytes allocated on the C heap now (in-use arena chunks + mmapped blocks); -1 if the
    C library has no ``mallinfo2`` (not glibc >= 2.33)."""
    if _LIBC is None:
        return -1
    info = _LIBC.mallinfo2()
    return int(info.uordblks + info.hblkhd)


class HeapPeak(TorchDispatchMode):
    """The highest :func:`heap_bytes` seen after any torch op inside the block (backward and
    optimizer ops included), as ``rise`` above the level at entry."""

    def __enter__(self) -> HeapPeak:
        self.start = self.peak = heap_bytes()
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, heap_bytes())
        return out

    @property
    def rise(self) -> int:
        return self.peak - self.start


def _tensor_bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def _optimizer_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(_tensor_bytes(state.values()) for state in opt.state.values())


class _SavedCounter:
    """Counts bytes saved for backward: each storage once, parameters excluded."""

    def __init__(self, model: nn.Module) -> None:
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.seen: set[int] = set()
        # Holding what was seen keeps its address from being reused by a later tensor, which
        # would then be taken for a duplicate (lean frees the float originals once packed).
        self.keep: list[torch.Tensor] = []
        self.bytes = 0
        self.count = 0

    def plain(self, t: torch.Tensor) -> torch.Tensor:
        self.observe(t, t, None)
        return t

    def observe(self, t: torch.Tensor, payload: object, nbytes: int | None) -> None:
        key = t.untyped_storage().data_ptr()
        if key in self.params or key in self.seen:
            return
        self.seen.add(key)
        self.keep.append(t)
        self.count += 1
        self.bytes += t.untyped_storage().nbytes() if nbytes is None else nbytes


def saved_tensor_bytes(model: nn.Module, forward: Callable[[], torch.Tensor]) -> dict[str, int]:
    """Bytes and number of distinct storages that ``forward()`` saves for backward."""
    counter = _SavedCounter(model)
    lean.set_observer(counter.observe)  # a lean forward packs, and reports, what it saves
    try:
        with torch.autograd.graph.saved_tensors_hooks(counter.plain, lambda t: t):
            loss = forward()
    finally:
        lean.set_observer(None)
    loss.backward()
    return {"saved_bytes": counter.bytes, "saved_tensors": counter.count}


def _trim_heap() -> None:
    """Return the C heap's free pages to the OS (glibc ``malloc_trim``; a no-op elsewhere)."""
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def _rss_rise_mb(fn: Callable[[], None]) -> float | None:
    """Peak RSS (MB) while ``fn`` runs minus RSS just before, by memory-profiler, the heap
    trimmed first; None where its monitor process cannot start (e.g. in daemonic workers)."""
    try:
        from memory_profiler import memory_usage

        _trim_heap()
        before = memory_usage(-1, interval=0.01, max_usage=True)
        peak = memory_usage((fn, (), {}), interval=0.001, max_usage=True)
    except Exception:  # noqa: BLE001 - a cross-check, never a reason to fail a run
        return None
    return float(peak - before)


def step_memory(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = 1e-3, rss: bool = True
) -> dict[str, float]:
    """Memory of one Adam training step of a *copy* of ``model`` on ``(x, y)``.

    The copy (and a forked RNG) leaves ``model`` and the global random stream untouched, so a
    run that measures itself first trains exactly as one that does not. A first step creates
    the gradients and Adam's state; the second is the one measured.
    """
    with torch.random.fork_rng():
        net = copy.deepcopy(model).train()
        opt = torch.optim.Adam(net.parameters(), lr=lr)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()

        step()
        saved = saved_tensor_bytes(net, lambda: F.cross_entropy(net(x), y))
        opt.zero_grad(set_to_none=True)
        with HeapPeak() as peak:
            step()
        out = {
            "batch": len(x),
            "param_bytes": _tensor_bytes(net.parameters()),
            "grad_bytes": _tensor_bytes(p.grad for p in net.parameters()),
            "optimizer_bytes": _optimizer_bytes(opt),
            **saved,
            "step_peak_bytes": peak.rise if peak.start >= 0 else -1,
        }
        if rss:
            opt.zero_grad(set_to_none=True)  # as before the heap-peak step
            out["rss_rise_mb"] = _rss_rise_mb(step)
    return out


def train_mem_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """:func:`step_memory` as MLflow metrics prefixed ``train_mem_`` (one extra step, on a copy)."""
    m = step_memory(model, x, y, rss=False)
    return {f"train_mem_{k}": float(v) for k, v in m.items() if v is not None}
