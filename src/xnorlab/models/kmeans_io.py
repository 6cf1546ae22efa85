"""A fitted K-means as the run's checkpoint (``checkpoints/best.ckpt``), so the export stage
reads it where it reads every other run's: a ``torch.save`` of plain tensors and config that
``torch.load(weights_only=True)`` accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_writer
from .kmeans import KMeans

__all__ = ["KIND", "is_kmeans_checkpoint", "load_kmeans_checkpoint", "save_kmeans_checkpoint"]

KIND = "xnorlab-kmeans"


def save_kmeans_checkpoint(km: KMeans, cfg: dict[str, Any], path: str | Path) -> Path:
    """Write ``km`` (fitted, clusters labelled) and the run config atomically."""
    st = km.state()
    data = {
        "kind": KIND,
        "config": cfg,
        "k": st["k"], "metric": st["metric"], "threshold": st["threshold"],
        "centers": torch.from_numpy(st["centers"]),
        "cluster_to_label": None if st["cluster_to_label"] is None
        else torch.from_numpy(st["cluster_to_label"]),
    }
    with atomic_writer(path) as f:
        torch.save(data, f)
    return Path(path)


def _load(path: str | Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def is_kmeans_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` holds a K-means checkpoint (False for a Lightning one)."""
    try:
        data = _load(path)
    except Exception:  # noqa: BLE001 - any unreadable or Lightning file is "not ours"
        return False
    return isinstance(data, dict) and data.get("kind") == KIND


def load_kmeans_checkpoint(path: str | Path) -> tuple[KMeans, dict[str, Any]]:
    """(the fitted model, the run config)."""
    data = _load(path)
    if not (isinstance(data, dict) and data.get("kind") == KIND):
        raise ValueError(f"{path}: not a K-means checkpoint")
    c2l = data["cluster_to_label"]
    km = KMeans.from_state({
        "k": data["k"], "metric": data["metric"], "threshold": data["threshold"],
        "centers": data["centers"].numpy(),
        "cluster_to_label": None if c2l is None else np.asarray(c2l.numpy()),
    })
    return km, data["config"]
