"""``PackedEngine``: runs a bit-packed network (from a ``.xnor`` file or from layer objects).

>>> eng = PackedEngine.load("models/x/packed.xnor")            # doctest: +SKIP
>>> eng.predict(images_uint8)                                  # doctest: +SKIP

Input: ``uint8`` pixels shaped ``(N, *input_shape)`` in torch layout (N, C, H, W), i.e. the
values ``round(255 * x)`` of the float images the torch model takes.
"""

from __future__ import annotations

import os
import types
from pathlib import Path
from typing import Any

import numpy as np

from . import reference
from .backend import OPS, Backend
from .centroids import NearestCentroid
from .format import PackedFormatError, PackedGraph, load_file, save_packed
from .layers import (
    Act,
    Conv2d,
    Dense,
    Layer,
    MaxPool2d,
    infer_shapes,
)
from .real_layers import RealConv2d, RealDense

__all__ = ["BACKENDS", "PackedEngine", "get_backend"]

BACKENDS = ("numba", "numpy")

#: The numba backend's runner builders (see :meth:`~.layers.Layer.runner`).
RUNNERS = ("binary_conv2d_runner", "compact_pixels_runner", "uint8_conv2d_runner",
           "uint8_gemm_threshold_runner", "xnor_gemm_runner", "xnor_gemm_threshold_runner",
           "xnor_scores_runner")


def get_backend(name: str, threads: int | None = None) -> Backend:
    """The kernel set of a backend (a :class:`~.backend.Backend`): ``"numba"`` (fast path) or
    ``"numpy"`` (reference)."""
    if name == "numba":
        from . import centroid_kernels, graph_kernels, kernels

        # the graph and K-means ops live in modules of their own
        mods: tuple[Any, ...] = (kernels, graph_kernels, centroid_kernels)
    elif name == "numpy":
        mods = (reference,)
    else:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")

    def bind(fn):
        if name == "numba" and threads is not None:
            return lambda *a, **k: fn(*a, threads=threads, **k)
        return fn

    def find(op: str):
        return next(getattr(m, op) for m in mods if hasattr(m, op))

    ops = {op: bind(find(op)) for op in OPS}
    if name == "numba":  # optional: prepared calls for repeated shapes (Layer.runner)
        ops.update({op: bind(getattr(kernels, op)) for op in RUNNERS})
    return types.SimpleNamespace(name=name, **ops)  # type: ignore[return-value]


class PackedEngine:
    """A packed network: layers + input shape + backend.

    Args:
        layers: :mod:`.layers` objects in order (as produced by :mod:`.export` or a file).
        input_shape: shape of one input sample, (C, H, W) (or (K,)).
        backend: ``"numba"`` (default) or ``"numpy"`` (the reference path).
        threads: numba thread count for the kernels (None = numba's current setting).
        batch_size: samples per internal chunk (bounds activation memory: ~26 MB of int32
            pre-activations for the suite CNN's first conv at 1024); None = all at once. At 256
            the suite MLP took 1.1-1.2x as long per image as at 1024.
        metadata: free-form information kept with the model (saved in the file).
    """

    def __init__(
        self,
        layers: list[Layer],
        input_shape: tuple[int, ...],
        *,
        backend: str = "numba",
        threads: int | None = None,
        batch_size: int | None = 1024,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.layers = list(layers)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.metadata = dict(metadata or {})
        self.batch_size = batch_size
        self.threads = threads
        self.backend = backend
        self.ops = get_backend(backend, threads)
        self.shapes = infer_shapes(self.layers, self.input_shape)
        self._fused = _fuse_pools(self.layers)
        self._plans: dict[tuple[Any, ...], list[Any] | None] = {}

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> Any:
        """Load a ``.xnor`` file (raises :class:`PackedFormatError` on a bad file): a
        :class:`PackedEngine` for a version-1 file, a :class:`~.graph.GraphEngine` (the same
        running interface) for a version-2 graph."""
        pm = load_file(path)
        if isinstance(pm, PackedGraph):
            from .graph import GraphEngine

            return GraphEngine(pm.nodes, pm.input_shape, pm.output, metadata=pm.metadata,
                               **kwargs)
        try:
            return cls(pm.layers, pm.input_shape, metadata=pm.metadata, **kwargs)
        except ValueError as e:
            if isinstance(e, PackedFormatError):
                raise
            raise PackedFormatError(f"{path}: inconsistent model: {e}") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model to ``path`` (atomic)."""
        return save_packed(path, self.layers, self.input_shape, self.metadata)

    # -- info -----------------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return int(self.shapes[-1].dims[0])

    @property
    def compute_layers(self) -> list[Layer]:
        return [m for m in self.layers if isinstance(m, Dense | Conv2d | RealDense | RealConv2d
                                                     | NearestCentroid)]

    @property
    def steps(self) -> list[tuple[Layer, dict[str, Any]]]:
        """What :meth:`scores` runs: (layer, forward kwargs), a fused max-pool folded into its
        conv (``pool``)."""
        return list(self._fused)

    def model_bytes(self) -> int:
        """Bytes of all arrays (packed weights, thresholds, flips, affine)."""
        return sum(a.nbytes for m in self.layers for a in m.arrays().values())

    def __repr__(self) -> str:
        parts = " -> ".join(s.describe() for s in self.shapes)
        return f"PackedEngine(backend={self.backend!r}, {parts})"

    # -- running --------------------------------------------------------------------------

    def _check_input(self, x: Any) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise ValueError(f"input must be a numpy uint8 array, got {type(x).__name__}")
        if x.dtype != np.uint8:
            raise ValueError(
                f"input must be uint8 pixels (0..255, i.e. round(255 * x)), got dtype {x.dtype}"
            )
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"input must have shape (N, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        return x

    def _run(self, x: np.ndarray, want_int: bool) -> tuple[np.ndarray, list[np.ndarray]]:
        a = Act("u8", np.ascontiguousarray(x))
        ints: list[np.ndarray] = []
        if want_int:
            for layer in self.layers:
                a, y = layer.forward(a, self.ops, True)
                if y is not None:
                    ints.append(y)
            return a.data, ints
        runners = self._runners(a)
        if runners is not None:
            data = a.data
            with _numba_threads(self.threads):  # once per pass, not per kernel call
                for run in runners:
                    data = run(data)
            return data, ints
        for layer, kwargs in self._fused:
            a, _ = layer.forward(a, self.ops, False, **kwargs)
        return a.data, ints

    #: Prepared passes kept per engine (input shape x thread count); more are rebuilt.
    MAX_PLANS = 8

    def _runners(self, a: Act) -> list[Any] | None:
        """The fused steps as :meth:`~.layers.Layer.runner` callables for inputs shaped like
        ``a`` (numba backend; None where a step has none), built on first use: at batch 1 the
        checked per-call path cost the suite CNN 3x its kernels' time."""
        if self.backend != "numba":
            return None
        import numba

        key = (a.data.shape, self.threads or numba.get_num_threads())
        if key not in self._plans:
            if len(self._plans) >= self.MAX_PLANS:
                self._plans.clear()
            self._plans[key] = self._build_runners(a)
        return self._plans[key]

    def _build_runners(self, a: Act) -> list[Any] | None:
        runners = []
        for layer, kwargs in self._fused:  # one checked pass gives each step its input
            run = layer.runner(self.ops, a, **kwargs)
            if run is None:
                return None
            runners.append(run)
            a, _ = layer.forward(a, self.ops, False, **kwargs)
        return runners

    def _chunks(self, n: int) -> list[slice]:
        step = n if not self.batch_size else max(1, int(self.batch_size))
        return [slice(i, min(n, i + step)) for i in range(0, max(n, 1), step)] if n else []

    def forward_int(self, x: np.ndarray) -> list[np.ndarray]:
        """Pre-activations of every compute layer in torch layout: (N, out) for dense layers,
        (N, C, H, W) for conv layers; int32 (exact) except ``real_dense`` (float32 ``x . w``)."""
        x = self._check_input(x)
        parts: list[list[np.ndarray]] = []
        for sl in self._chunks(x.shape[0]):
            parts.append(self._run(x[sl], True)[1])
        if not parts:
            return [np.zeros((0,), np.int32) for _ in self.compute_layers]
        return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]

    def scores(self, x: np.ndarray) -> np.ndarray:
        """float32 class scores (N, classes) (fused threshold kernels on hidden layers)."""
        x = self._check_input(x)
        outs = [self._run(x[sl], False)[0] for sl in self._chunks(x.shape[0])]
        if not outs:
            return np.zeros((0, self.num_classes), np.float32)
        out = outs[0] if len(outs) == 1 else np.concatenate(outs)
        return out.astype(np.float32, copy=False)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted class per sample (int64): argmax of :meth:`scores` (first maximum), mapped
        through the last layer's ``labels`` where it has them (K-means: centroid -> class)."""
        best = np.argmax(self.scores(x), axis=1).astype(np.int64)
        labels = getattr(self.layers[-1], "labels", None)
        return best if labels is None else labels[best].astype(np.int64)


def _numba_threads(threads: int | None) -> Any:
    """:class:`.kernels._with_threads`, imported on first use (the numpy backend needs no
    numba); an import inside the hot path cost 5 us per call."""
    global _NUMBA_THREADS
    if _NUMBA_THREADS is None:
        from .kernels import _with_threads

        _NUMBA_THREADS = _with_threads
    return _NUMBA_THREADS(threads)


_NUMBA_THREADS: Any = None


def _fuse_pools(layers: list[Layer]) -> list[tuple[Layer, dict[str, Any]]]:
    """(layer, forward kwargs) steps: a thresholded conv followed by a non-overlapping max-pool
    (kernel = stride, no padding) runs as one step, the OR-pool fused into its output stage."""
    steps: list[tuple[Layer, dict[str, Any]]] = []
    i = 0
    while i < len(layers):
        layer, nxt = layers[i], layers[i + 1] if i + 1 < len(layers) else None
        if (
            isinstance(layer, Conv2d)
            and layer.outputs_bits
            and isinstance(nxt, MaxPool2d)
            and nxt.kernel == nxt.stride
            and nxt.padding == (0, 0)
        ):
            steps.append((layer, {"pool": nxt.kernel}))
            i += 2
        else:
            steps.append((layer, {}))
            i += 1
    return steps
