"""PNG figures of one run: confusion matrix, training curves, an image grid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on these machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xnorlab.io import figure_png, write_atomic  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    write_atomic(path, figure_png(fig))
    return path


def plot_confusion(counts: np.ndarray, classes: Sequence[str], title: str, path: Path) -> Path:
    """Confusion matrix with counts in each cell."""
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(counts, cmap="Blues")
    ax.set(xticks=range(len(classes)), yticks=range(len(classes)), xlabel="predicted class",
           ylabel="true class", title=title)
    ax.set_xticklabels(classes, rotation=45, ha="right")
    ax.set_yticklabels(classes)
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, str(n), ha="center", va="center", fontsize=7,
                color="white" if n > counts.max() / 2 else "black")
    fig.colorbar(im, ax=ax, label="test examples")
    return _save(fig, path)


def plot_curves(history: list[dict[str, float]], title: str, path: Path) -> Path:
    """Loss and accuracy per epoch, train and validation."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for split in ("train", "val"):
        if any(f"{split}_loss" in h for h in history):
            ax_loss.plot(epochs, [h.get(f"{split}_loss") for h in history], "o-", label=split)
            ax_acc.plot(epochs, [100 * h.get(f"{split}_acc", np.nan) for h in history], "o-",
                        label=split)
    ax_loss.set(xlabel="epoch", ylabel="loss", title=f"{title}: loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title=f"{title}: accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def plot_image_grid(
    images: np.ndarray, captions: Sequence[str], title: str, path: Path, cols: int = 8
) -> Path:
    """Images (N, C, H, W) uint8 or [0, 1] float in a grid, each with a caption."""
    rows = max(1, -(-len(images) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, caption in zip(axes.flat, images, captions, strict=False):
        img = np.transpose(img, (1, 2, 0)).squeeze()
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        ax.set_title(caption, fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)
