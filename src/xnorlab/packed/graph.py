"""``GraphEngine``: runs a version-2 ``.xnor`` graph (the packed binarized ViT).

The same interface as :class:`~.engine.PackedEngine` (``scores``, ``predict``, ``forward_int``,
``save``, ``model_bytes``); :meth:`PackedEngine.load <.engine.PackedEngine.load>` returns one
for a version-2 file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .format import PackedGraph, graph_shapes, load_file, save_graph
from .nodes import BCLinear, BinaryLinear, Node

__all__ = ["GraphEngine"]


def last_reads(nodes: list[Node], output: str) -> list[list[str]]:
    """Per node, the activations it is the last to read (never the output): the engine drops
    them right after, so the allocator hands their (cache-hot) memory to the next outputs
    instead of fresh memory for every node (all kept alive, the ViT's activations were 7 MB
    at batch 64: each node wrote to cold memory, 1.1x the time)."""
    last = {name: k for k, node in enumerate(nodes) for name in node.inputs}
    done: list[list[str]] = [[] for _ in nodes]
    for name, k in last.items():
        if name != output:
            done[k].append(name)
    return done


class GraphEngine:
    """A packed graph + backend (``"numba"`` or ``"numpy"`` for the binary GEMMs; the real
    ops are float32 either way: NumPy, or torch's LayerNorm and attention for ``"numba"``).
    ``batch_size`` bounds activation memory. The nodes are fixed when the engine is built
    (:func:`last_reads`: do not edit the list after)."""

    def __init__(
        self,
        nodes: list[Node],
        input_shape: tuple[int, ...],
        output: str | None = None,
        *,
        backend: str = "numba",
        threads: int | None = None,
        batch_size: int | None = 1024,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        from .engine import get_backend

        self.nodes = list(nodes)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.output = output if output is not None else (self.nodes[-1].name if nodes else "")
        self.metadata = dict(metadata or {})
        self.backend = backend
        self.threads = threads
        self.batch_size = batch_size
        self.ops = get_backend(backend, threads)
        self.shapes = graph_shapes(self.graph)
        self._last_reads = last_reads(self.nodes, self.output)

    @property
    def graph(self) -> PackedGraph:
        return PackedGraph(self.nodes, self.input_shape, self.output, self.metadata)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> GraphEngine:
        """Load a version-2 file (raises :class:`~.format.PackedFormatError` on a bad file)."""
        g = load_file(path)
        if not isinstance(g, PackedGraph):
            from .format import PackedFormatError

            raise PackedFormatError(f"{path}: a version-1 sequential model, not a graph")
        return cls(g.nodes, g.input_shape, g.output, metadata=g.metadata, **kwargs)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the graph to ``path`` (version 2, atomic)."""
        return save_graph(path, self.graph)

    @property
    def num_classes(self) -> int:
        return int(self.shapes[self.output].dims[0])

    @property
    def binary_nodes(self) -> list[BinaryLinear | BCLinear]:
        """The nodes with packed 1-bit weights (``binary_linear`` and ``bc_linear``)."""
        return [n for n in self.nodes if isinstance(n, BinaryLinear | BCLinear)]

    def model_bytes(self) -> int:
        """Bytes of all arrays."""
        return sum(a.nbytes for n in self.nodes for a in n.arrays().values())

    def binary_weight_bytes(self) -> int:
        """Bytes of the packed binary weights alone."""
        return sum(n.weight.nbytes for n in self.binary_nodes)

    def __repr__(self) -> str:
        return f"GraphEngine(backend={self.backend!r}, {len(self.nodes)} nodes)"

    def _check_input(self, x: Any) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
            raise ValueError("input must be a numpy uint8 array of pixels (round(255 * x))")
        if tuple(x.shape[1:]) != self.input_shape or x.ndim != len(self.input_shape) + 1:
            raise ValueError(f"input must have shape (N, {', '.join(map(str, self.input_shape))})"
                             f", got {tuple(x.shape)}")
        return x

    def _run(self, x: np.ndarray, ints: list | None) -> np.ndarray:
        env: dict[str, np.ndarray] = {"input": np.ascontiguousarray(x)}
        for node, done in zip(self.nodes, self._last_reads, strict=True):
            env[node.name] = node.forward([env[i] for i in node.inputs], self.ops, ints)
            for name in done:
                del env[name]
        return env[self.output]

    def _chunks(self, n: int) -> list[slice]:
        step = n if not self.batch_size else max(1, int(self.batch_size))
        return [slice(i, min(n, i + step)) for i in range(0, n, step)]

    def scores(self, x: np.ndarray) -> np.ndarray:
        """float32 class scores (N, classes)."""
        x = self._check_input(x)
        outs = [self._run(x[sl], None) for sl in self._chunks(x.shape[0])]
        if not outs:
            return np.zeros((0, self.num_classes), np.float32)
        return np.concatenate(outs).astype(np.float32, copy=False)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """argmax of :meth:`scores` per sample (int64; a tie goes to the lowest class)."""
        return np.argmax(self.scores(x), axis=1).astype(np.int64)

    def forward_int(self, x: np.ndarray) -> list[np.ndarray]:
        """Pre-activations ``y`` (N, T, out) of every binary-weight node, in node order: int32
        for ``binary_linear``, float32 for ``bc_linear`` (BinaryConnect: real input)."""
        x = self._check_input(x)
        parts = []
        for sl in self._chunks(x.shape[0]):
            ints: list[np.ndarray] = []
            self._run(x[sl], ints)
            parts.append(ints)
        if not parts:
            return [np.zeros((0,), np.int32) for _ in self.binary_nodes]
        return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]
