"""K-means on binarized pixels, timed: the packed engine against the float assignment.

:class:`FloatAssign` is the float32 torch twin the benchmark times the packed model against
(the same computation as ``KMeans.predict``: pixels to +-1, one matmul with the +-1
centroids, nearest centroid); :func:`side_by_side` also times the model's own NumPy path.
``python -m xnorlab.bench.kmeans [N]`` prints the three side by side on random centroids.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
from torch import nn

from xnorlab.bench.timing import interleaved, set_threads
from xnorlab.models.kmeans import KMeans
from xnorlab.packed.export import export_kmeans

__all__ = ["FloatAssign", "side_by_side"]


class FloatAssign(nn.Module):
    """Scores ``-hamming`` of float images in [0, 1] to +-1 centroids, in float32 torch."""

    def __init__(self, km: KMeans) -> None:
        super().__init__()
        c = km.state()["centers"]
        self.register_buffer("centers_t", torch.from_numpy(np.ascontiguousarray(c.T)))
        self.threshold = float(km.threshold)
        self.d = c.shape[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.where(x.reshape(len(x), -1) >= self.threshold, 1.0, -1.0)
        return (s @ self.centers_t - self.d) * 0.5  # = -hamming


def side_by_side(km: KMeans, u8: np.ndarray, repeats: int = 5, min_seconds: float = 0.2,
                 threads: int = 1) -> dict[str, Any]:
    """Images/s of the packed engine, the float torch twin and ``KMeans.predict`` (NumPy,
    float), timed in interleaved rounds on the same ``u8`` batch; assignments checked equal
    first."""
    set_threads(threads)
    eng = export_kmeans(km, u8.shape[1:], backend="numba", threads=threads)
    flat = u8.reshape(len(u8), -1)
    x = torch.from_numpy(u8).float() / 255.0
    twin = FloatAssign(km).eval()
    want = km.predict(flat)
    got = np.argmax(eng.scores(u8), axis=1)
    with torch.inference_mode():
        via_torch = twin(x).argmax(1).numpy()
    if not (np.array_equal(got, want) and np.array_equal(via_torch, want)):
        raise AssertionError("assignments differ between packed, torch and NumPy")
    calls = {
        "packed_fast": lambda: eng.predict(u8),
        "torch_float32": lambda: twin(x).argmax(1),
        "numpy_float32": lambda: km.predict(flat),
    }
    out: dict[str, Any] = {"n": len(u8), "threads": threads}
    with torch.inference_mode():
        timed = interleaved(calls, repeats, min_seconds)
    for name, (_, secs) in timed.items():
        out[name] = {"images_per_s_best": len(u8) / min(secs),
                     "images_per_s_median": len(u8) / float(np.median(secs))}
    for base in ("torch_float32", "numpy_float32"):
        out[f"speedup_over_{base}"] = (out["packed_fast"]["images_per_s_best"]
                                       / out[base]["images_per_s_best"])
    return out


def _random_kmeans(k: int, d: int, seed: int = 0) -> KMeans:
    rng = np.random.default_rng(seed)
    c = np.where(rng.random((k, d)) < 0.5, 1.0, -1.0).astype(np.float32)
    return KMeans.from_state({"k": k, "metric": "hamming", "threshold": 0.5, "centers": c,
                              "cluster_to_label": np.arange(k) % 10})


if __name__ == "__main__":  # pragma: no cover - a measurement, not a test
    import json

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    u = np.random.default_rng(1).integers(0, 256, size=(n, 1, 28, 28), dtype=np.uint8)
    print(json.dumps(side_by_side(_random_kmeans(10, 784), u), indent=1))
