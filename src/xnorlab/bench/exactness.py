"""Check that a packed engine reproduces the PyTorch model bit for bit."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from xnorlab.packed.engine import PackedEngine
from xnorlab.packed.export import torch_integer_preactivations


@dataclass
class Exactness:
    """Disagreements between engine and torch over `n_images` test images (all should be 0)."""

    n_images: int
    mismatched_predictions: int
    mismatched_preactivations: int
    preactivation_values: int

    @property
    def exact(self) -> bool:
        return self.mismatched_predictions == 0 and self.mismatched_preactivations == 0

    def as_dict(self) -> dict[str, int | bool]:
        return {**asdict(self), "exact": self.exact}


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """The engine's input: the 8-bit pixels the torch model's Quantize8bit sees."""
    return torch.round(x * 255).clamp(0, 255).to(torch.uint8).numpy()


@torch.no_grad()
def compare(
    model: nn.Module, engine: PackedEngine, images: torch.Tensor, chunk: int = 500
) -> Exactness:
    """Integer pre-activations of every binary layer and predicted classes, engine vs torch."""
    model.eval()
    bad_pred = bad_pre = values = 0
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk]
        u8 = to_uint8(x)
        torch_pre = torch_integer_preactivations(model, x)
        engine_pre = engine.forward_int(u8)
        if len(torch_pre) != len(engine_pre):
            raise AssertionError(
                f"engine has {len(engine_pre)} compute layers, torch {len(torch_pre)}"
            )
        for t, e in zip(torch_pre, engine_pre, strict=True):
            bad_pre += int(np.count_nonzero(np.asarray(t, np.int64) != e.reshape(t.shape)))
            values += t.size
        bad_pred += int(np.count_nonzero(model(x).argmax(1).numpy() != engine.predict(u8)))
    return Exactness(len(images), bad_pred, bad_pre, values)
