"""Sizes and timings of a trained network: what the cost/savings tables are made of."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import torch
from memory_profiler import memory_usage
from torch import nn

from xnorlab.quant.layers import is_binary_layer


def size_report(model: nn.Module) -> dict[str, float]:
    """Parameter counts and model bytes at 32 bits, and with binary kernels at 1 bit.

    Buffers (BatchNorm statistics) count as float32 in both; they are what stays real.
    """
    total = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers() if b.is_floating_point())
    binary = sum(
        m.weight.numel() for m in model.modules() if is_binary_layer(m) and m.binary_kernel
    )
    bytes_fp32 = 4 * (total + buffers)
    bytes_1bit = binary / 8 + 4 * (total - binary + buffers)
    return {
        "params_total": total,
        "params_binary": binary,
        "model_bytes_fp32": bytes_fp32,
        "model_bytes_1bit": bytes_1bit,
        "compression_ratio": bytes_fp32 / bytes_1bit,
    }


def state_dict_bytes(model: nn.Module) -> int:
    """Size of the network saved as a float32 PyTorch checkpoint (weights only, no optimizer)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@torch.no_grad()
def inference_seconds_per_example(
    model: nn.Module, x: torch.Tensor, batch_size: int = 1000, repeats: int = 3,
    max_examples: int = 2000,
) -> float:
    """Best-of-`repeats` wall time of float PyTorch eval over `x`, per example.

    Only the first `max_examples` are timed: a per-example figure needs a few full batches,
    not the whole test set three times (that took 25 s per CNN run in the suite).
    """
    model.eval()
    x = x[:max_examples]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(x), batch_size):
            model(x[i : i + batch_size])
        best = min(best, time.perf_counter() - start)
    return best / len(x)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Predicted classes of `model` in eval mode."""
    model.eval()
    return np.concatenate(
        [model(x[i : i + batch_size]).argmax(1).numpy() for i in range(0, len(x), batch_size)]
    )


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts[i, j] of examples of class i predicted as j."""
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    return counts


class PeakRSS:
    """Peak resident memory (MB) of this process while the `with` block runs.

    Samples memory-profiler's RSS reading from a background thread. memory-profiler's own
    `memory_usage(callable)` forks a monitor process, which fails inside joblib/loky sweep
    workers; a thread works everywhere.
    """

    def __init__(self, interval_s: float = 0.2):
        self.interval_s = interval_s
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, memory_usage(-1, interval=0.01, max_usage=True))
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> PeakRSS:
        self.start_mb = self.peak_mb = memory_usage(-1, interval=0.01, max_usage=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, memory_usage(-1, interval=0.01, max_usage=True))
