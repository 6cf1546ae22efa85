"""Load a downloaded dataset as uint8 image arrays and int64 labels."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xnorlab.data.cifar import read_cifar10
from xnorlab.data.idx import IdxFormatError, read_idx


@dataclass(frozen=True)
class ImageArrays:
    """Train and test split of a dataset: images (N, C, H, W) uint8, labels (N,) int64."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def _idx_split(root: Path, files: Mapping[str, Any], split: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(root / files[f"{split}_images"]["name"])
    labels = read_idx(root / files[f"{split}_labels"]["name"])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise IdxFormatError(
            f"{root}: {split} images {images.shape} and labels {labels.shape} do not pair up "
            "(expected (N, H, W) and (N,))"
        )
    return images[:, None, :, :], labels.astype(np.int64)


def load_arrays(dataset_cfg: Mapping[str, Any], root: str | Path) -> ImageArrays:
    """Read the dataset in `root` (as written by the download stage) and check its shape."""
    root = Path(root)
    fmt = dataset_cfg["format"]
    if fmt == "idx":
        train_x, train_y = _idx_split(root, dataset_cfg["files"], "train")
        test_x, test_y = _idx_split(root, dataset_cfg["files"], "test")
    elif fmt == "cifar10":
        train_x, train_y, test_x, test_y = read_cifar10(
            root / dataset_cfg["files"]["archive"]["name"]
        )
    else:
        raise ValueError(f"unknown dataset format {fmt!r} (known: idx, cifar10)")
    shape = tuple(dataset_cfg["shape"])
    for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if x.shape[1:] != shape or x.dtype != np.uint8:
            raise ValueError(f"{root}: {name} images are {x.dtype}{x.shape[1:]}, config {shape}")
        if y.min(initial=0) < 0 or y.max(initial=0) >= dataset_cfg["num_classes"]:
            raise ValueError(f"{root}: {name} labels outside 0..{dataset_cfg['num_classes'] - 1}")
    return ImageArrays(train_x, train_y, test_x, test_y)
