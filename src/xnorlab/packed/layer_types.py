"""Every packed layer type by its name in the ``.xnor`` header (what the reader accepts)."""

from __future__ import annotations

from .centroids import NearestCentroid
from .layers import Conv2d, Dense, Flatten, Layer, MaxPool2d
from .real_layers import RealConv2d, RealDense

__all__ = ["LAYER_TYPES"]

LAYER_TYPES: dict[str, type[Layer]] = {
    cls.type_name: cls
    for cls in (Dense, Conv2d, MaxPool2d, Flatten, RealDense, RealConv2d, NearestCentroid)
}
