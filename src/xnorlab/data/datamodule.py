"""LightningDataModule over an in-memory image dataset with a seeded validation split.

Images reach the model as float32 in [0, 1] (pixel / 255). Models normalize themselves: a float
model starts with mean/std normalization, a binarized model re-quantizes to the exact 8-bit
input (see docs/architecture.md), so `normalize` is off by default.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from xnorlab.data.arrays import ImageArrays, load_arrays


class BatchLoader:
    """Yields (x, y) batches by slicing whole tensors: far faster than per-item DataLoaders."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool, seed: int):
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return (len(self.x) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            yield self.x[idx], self.y[idx]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def split_train_val(
    n: int, val_size: int, how: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the train and validation parts: the last `val_size` images, or a seeded draw."""
    if not 0 <= val_size < n:
        raise ValueError(f"val_size={val_size} must be in [0, {n})")
    if how == "last":  # the BNN paper keeps the last 10,000 MNIST training images
        order = np.arange(n)
    elif how == "random":
        order = np.random.default_rng(seed).permutation(n)
    else:
        raise ValueError(f"val_split={how!r}; choose 'last' or 'random'")
    return np.sort(order[: n - val_size]), np.sort(order[n - val_size :])


class ImageDataModule(pl.LightningDataModule):
    """Train/val/test loaders for a dataset downloaded to `data_dir`."""

    def __init__(
        self,
        dataset_cfg: Mapping[str, Any],
        data_dir: str | Path,
        batch_size: int = 100,
        eval_batch_size: int = 1000,
        val_size: int = 10000,
        val_split: str = "last",
        seed: int = 0,
        normalize: bool = False,
        train_limit: int | None = None,
        eval_limit: int | None = None,
        arrays: ImageArrays | None = None,
    ):
        super().__init__()
        self.dataset_cfg = dict(dataset_cfg)
        self.data_dir = Path(data_dir)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.val_split, self.seed = val_size, val_split, seed
        self.normalize = normalize
        self.train_limit, self.eval_limit = train_limit, eval_limit
        self._arrays = arrays
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._train_loader: BatchLoader | None = None

    def _tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.from_numpy(x).float().div_(255.0)
        if self.normalize:
            mean = torch.tensor(self.dataset_cfg["mean"]).view(1, -1, 1, 1)
            std = torch.tensor(self.dataset_cfg["std"]).view(1, -1, 1, 1)
            images = (images - mean) / std
        return images, torch.from_numpy(y)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        arrays = self._arrays or load_arrays(self.dataset_cfg, self.data_dir)
        train_idx, val_idx = split_train_val(
            len(arrays.train_x), self.val_size, self.val_split, self.seed
        )
        # Limits keep smoke runs fast; they take the first examples of each split.
        train_idx = train_idx[: self.train_limit]
        val_idx = val_idx[: self.eval_limit]
        self.splits["train"] = self._tensors(arrays.train_x[train_idx], arrays.train_y[train_idx])
        self.splits["val"] = self._tensors(arrays.train_x[val_idx], arrays.train_y[val_idx])
        self.splits["test"] = self._tensors(
            arrays.test_x[: self.eval_limit], arrays.test_y[: self.eval_limit]
        )

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> BatchLoader:
        x, y = self.splits[split]
        return BatchLoader(x, y, batch_size, shuffle, self.seed)

    def train_dataloader(self) -> BatchLoader:
        if self._train_loader is None:  # one loader, so its shuffle state lives across epochs
            self._train_loader = self._loader("train", self.batch_size, shuffle=True)
        return self._train_loader

    # Lightning stores a data module's state_dict in every checkpoint and restores it on resume
    # (its per-loader state is restored only mid-epoch): a resumed run then draws the same epoch
    # orders as a run that was never stopped.
    def state_dict(self) -> dict[str, Any]:
        return {"train_loader": self.train_dataloader().state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "train_loader" in state:  # absent in checkpoints written before it was saved
            self.train_dataloader().load_state_dict(state["train_loader"])

    def val_dataloader(self) -> BatchLoader:
        return self._loader("val", self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> BatchLoader:
        return self._loader("test", self.eval_batch_size, shuffle=False)
