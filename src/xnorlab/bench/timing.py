"""Side-by-side inference timing: float32 PyTorch vs the packed engine, with repeats."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numba
import numpy as np
import torch
from torch import nn

from xnorlab.bench.exactness import to_uint8
from xnorlab.packed.engine import PackedEngine
from xnorlab.train.measure import PeakRSS


@dataclass
class Timing:
    """One (engine, threads, batch) measurement; seconds are per call of one batch."""

    engine: str
    threads: int
    batch: int
    calls_per_repeat: int
    repeats: int
    best_s: float
    median_s: float

    @property
    def images_per_s_best(self) -> float:
        return self.batch / self.best_s

    @property
    def images_per_s_median(self) -> float:
        return self.batch / self.median_s

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "images_per_s_best": self.images_per_s_best,
            "images_per_s_median": self.images_per_s_median,
            "latency_ms_best": 1e3 * self.best_s,
            "latency_ms_median": 1e3 * self.median_s,
        }


def calibrate(fn: Callable[[], object], min_seconds: float) -> int:
    """Compile and warm ``fn``; the number of calls that lasts about ``min_seconds``."""
    fn()  # JIT compilation
    # warm up for about one repeat: the first calls after a switch of engine, batch or thread
    # count run several times slower (oneDNN primitive creation, caches, thread pools)
    start, warm = time.perf_counter(), 0
    while warm < 2 or time.perf_counter() - start < min_seconds:
        fn()
        warm += 1
    one = max((time.perf_counter() - start) / warm, 1e-7)
    return max(1, int(min_seconds / one))


def timed_repeat(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call of ``fn`` over ``calls`` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def time_calls(
    fn: Callable[[], object], repeats: int, min_seconds: float
) -> tuple[int, list[float]]:
    """Per-call seconds of `fn` over `repeats` repeats, each long enough to time reliably."""
    calls = calibrate(fn, min_seconds)
    return calls, [timed_repeat(fn, calls) for _ in range(repeats)]


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, min_seconds: float
) -> dict[str, tuple[int, list[float]]]:
    """:func:`time_calls` of several callables in rounds (one repeat of each per round), so a
    host that slows down for a while slows every engine alike and their ratio holds."""
    calls = {name: calibrate(fn, min_seconds) for name, fn in fns.items()}
    per_call: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            per_call[name].append(timed_repeat(fn, calls[name]))
    return {name: (calls[name], per_call[name]) for name in fns}


def set_threads(threads: int) -> None:
    """Same thread count for torch (intra-op) and numba (the packed kernels)."""
    # numba first: its first call starts the OpenMP runtime torch shares, which resets torch's
    # thread count to all cores (torch then ran a "1 thread" baseline on 2)
    numba.set_num_threads(threads)
    torch.set_num_threads(threads)


def engine_runners(
    model: nn.Module, packed: PackedEngine, reference: PackedEngine | None
) -> dict[str, Callable[[torch.Tensor, np.ndarray], Callable[[], object]]]:
    """Name -> factory of a zero-argument call classifying one batch (float x, uint8 u8)."""
    model.eval()

    def torch_call(x: torch.Tensor, _: np.ndarray) -> Callable[[], object]:
        def call() -> object:
            with torch.inference_mode():
                return model(x).argmax(1)
        return call

    runners = {
        "torch_float32": torch_call,
        "packed_fast": lambda _, u8: lambda: packed.predict(u8),
    }
    if reference is not None:
        runners["packed_numpy"] = lambda _, u8: lambda: reference.predict(u8)
    return runners


def benchmark_model(
    model: nn.Module,
    packed: PackedEngine,
    images: torch.Tensor,
    batches: list[int],
    threads: list[int],
    repeats: int = 5,
    min_seconds: float = 0.2,
    reference: PackedEngine | None = None,
    reference_max_batch: int = 64,
) -> list[dict[str, Any]]:
    """Time every engine at every (threads, batch), interleaved so drift hits all alike: the
    engines in rounds (:func:`interleaved`), and the thread counts of one batch back to back
    (a 2-thread over 1-thread ratio compares figures taken seconds apart, not the length of a
    whole thread count's sweep apart)."""
    rows = []
    runners = engine_runners(model, packed, reference)
    for batch in batches:
        x = images[:batch]
        if len(x) < batch:  # fewer test images than the batch: tile them
            x = x.repeat((batch + len(x) - 1) // len(x), 1, 1, 1)[:batch]
        u8 = to_uint8(x)
        for t in threads:
            set_threads(t)
            fns = {name: make(x, u8) for name, make in runners.items()
                   # the reference is single-threaded and slow: small batches only
                   if name != "packed_numpy" or (batch <= reference_max_batch and t == 1)}
            for name, (calls, per_call) in interleaved(fns, repeats, min_seconds).items():
                rows.append(Timing(name, t, batch, calls, repeats, min(per_call),
                                   float(np.median(per_call))).as_dict())
    return rows


def inference_peak_rss(
    model: nn.Module, packed: PackedEngine, images: torch.Tensor, batch: int
) -> dict[str, float]:
    """Peak RSS (MB) while classifying one batch, and its rise over the RSS just before."""
    out = {}
    u8 = to_uint8(images[:batch])
    calls = {
        "torch_float32": lambda: model(images[:batch]).argmax(1),
        "packed_fast": lambda: packed.predict(u8),
    }
    for name, call in calls.items():
        with torch.inference_mode(), PeakRSS(interval_s=0.005) as rss:
            for _ in range(3):
                call()
        out[f"{name}_peak_rss_mb"] = rss.peak_mb
        out[f"{name}_rss_rise_mb"] = rss.peak_mb - rss.start_mb
    return out
