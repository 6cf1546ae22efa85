"""K-means on binarized pixels as a packed layer: XOR-popcount nearest centroid."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .bits import n_words
from .layers import Act, Layer, Shape, _check_padding_bits

__all__ = ["NearestCentroid"]


@dataclass(eq=False)
class NearestCentroid(Layer):
    """K-means on binarized pixels: the nearest centroid in Hamming distance, by XOR-popcount.

    Input: uint8 (N, in_features) (after :class:`Flatten`); pixel bit = ``u >= pixel_threshold``
    (the exporter derives the integer from the model's own float test). ``weight``: uint64
    (k, n_words(in_features)), the centroids' bits packed like a dense row; ``labels``: int32
    (k,), the class of each centroid. Scores: ``-hamming`` as float32 (N, k), exact integers;
    the engine predicts ``labels[argmax(scores)]``, i.e. the nearest centroid, a tie going to
    the lowest centroid index (``np.argmin``'s first minimum).
    """

    type_name: ClassVar[str] = "nearest_centroid"
    array_names: ClassVar[tuple[str, ...]] = ("weight", "labels")

    weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint64))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    in_features: int = 0
    pixel_threshold: int = 128

    def __post_init__(self) -> None:
        self.weight = np.ascontiguousarray(self.weight, dtype=np.uint64)
        self.labels = np.ascontiguousarray(self.labels, dtype=np.int32).reshape(-1)
        if self.weight.ndim != 2 or self.weight.shape[1] != n_words(self.in_features):
            raise ValueError("nearest_centroid: weight must be (k, n_words(in_features))")
        if self.weight.shape[0] < 1 or self.labels.shape != (self.weight.shape[0],):
            raise ValueError("nearest_centroid: needs k >= 1 centroids and one label each")
        if (self.labels < 0).any():
            raise ValueError("nearest_centroid: labels must be >= 0")
        if not 0 <= self.pixel_threshold <= 256:
            raise ValueError("nearest_centroid: pixel_threshold must be in 0..256")

    @property
    def outputs_bits(self) -> bool:
        return False

    def params(self) -> dict[str, Any]:
        return {
            "in_features": int(self.in_features),
            "centroids": int(self.weight.shape[0]),
            "pixel_threshold": int(self.pixel_threshold),
        }

    @classmethod
    def from_spec(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> NearestCentroid:
        layer = cls(weight=arrays["weight"], labels=arrays["labels"],
                    in_features=int(params["in_features"]),
                    pixel_threshold=int(params["pixel_threshold"]))
        if params["centroids"] != layer.weight.shape[0]:
            raise ValueError("centroids does not match the weight")
        return layer

    def out_shape(self, s: Shape) -> Shape:
        if s.kind != "u8_flat" or s.dims != (self.in_features,):
            raise ValueError(
                f"nearest_centroid expects u8_flat[{self.in_features}], gets {s.describe()}"
            )
        _check_padding_bits(self.weight, 1, self.in_features, "nearest_centroid")
        return Shape("scores", (int(self.weight.shape[0]),))

    def distances(self, u: np.ndarray, ops: Any) -> np.ndarray:
        """int32 (N, k) Hamming distances of the binarized pixels to every centroid."""
        return ops.threshold_hamming(u, self.pixel_threshold, self.weight)

    def forward(self, a: Act, ops: Any, want_int: bool) -> tuple[Act, np.ndarray | None]:
        d = self.distances(a.data, ops)
        return Act("scores", np.negative(d, dtype=np.float32)), d if want_int else None
