"""Check that a packed engine reproduces the PyTorch model bit for bit."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from xnorlab.packed.engine import PackedEngine
from xnorlab.packed.export import torch_integer_preactivations

#: Stated float tolerance of engine scores vs torch's: ``|e - t| <= SCORE_ATOL + SCORE_RTOL |t|``.
#: Scores are float32 on both sides but rounded differently (torch's BatchNorm and, for
#: BinaryConnect, its GEMM summation order vs the engine's folded ``scale * y + shift``).
SCORE_RTOL = 1e-4
SCORE_ATOL = 1e-4


@dataclass
class Exactness:
    """Disagreements between engine and torch over `n_images` test images.

    Integer pre-activations (layers on 8-bit pixels or signs) must match exactly; real ones
    (BinaryConnect's hidden layers: float32 GEMMs summed in another order) are compared with a
    float64 sum of the same inputs. ``prediction_mismatches`` lists each differing prediction
    with torch's margin (its top score minus its runner-up), so none is silently tolerated.
    """

    n_images: int
    mismatched_predictions: int
    mismatched_preactivations: int
    preactivation_values: int
    real_preactivation_values: int = 0
    max_real_preactivation_error: float = 0.0
    max_score_error: float = 0.0
    scores_outside_tolerance: int = 0
    prediction_mismatches: list[dict[str, float]] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return self.mismatched_predictions == 0 and self.mismatched_preactivations == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exact": self.exact,
                "score_tolerance": {"rtol": SCORE_RTOL, "atol": SCORE_ATOL}}


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """The engine's input: the 8-bit pixels the torch model's Quantize8bit sees."""
    return torch.round(x * 255).clamp(0, 255).to(torch.uint8).numpy()


@torch.no_grad()
def compare(
    model: nn.Module, engine: PackedEngine, images: torch.Tensor, chunk: int = 500
) -> Exactness:
    """Pre-activations of every binary layer, scores and predicted classes, engine vs torch."""
    model.eval()
    r = Exactness(len(images), 0, 0, 0)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk]
        u8 = to_uint8(x)
        torch_pre = torch_integer_preactivations(model, x, allow_real=True)
        engine_pre = engine.forward_int(u8)
        if len(torch_pre) != len(engine_pre):
            raise AssertionError(
                f"engine has {len(engine_pre)} compute layers, torch {len(torch_pre)}"
            )
        for t, e in zip(torch_pre, engine_pre, strict=True):
            e = e.reshape(t.shape)
            if t.dtype == np.int64:
                r.mismatched_preactivations += int(np.count_nonzero(t != e))
                r.preactivation_values += t.size
            else:
                err = float(np.abs(t - e.astype(np.float64)).max(initial=0.0))
                r.max_real_preactivation_error = max(r.max_real_preactivation_error, err)
                r.real_preactivation_values += t.size
        ts = model(x).numpy()
        es = engine.scores(u8)
        diff = np.abs(es.astype(np.float64) - ts)
        r.max_score_error = max(r.max_score_error, float(diff.max(initial=0.0)))
        r.scores_outside_tolerance += int(
            np.count_nonzero(diff > SCORE_ATOL + SCORE_RTOL * np.abs(ts))
        )
        tp, ep = ts.argmax(1), es.argmax(1)
        for i in np.flatnonzero(tp != ep):
            top2 = np.sort(ts[i])[-2:]
            r.prediction_mismatches.append({
                "index": start + int(i), "torch": int(tp[i]), "engine": int(ep[i]),
                "torch_margin": float(top2[1] - top2[0]),
            })
        r.mismatched_predictions += int(np.count_nonzero(tp != ep))
    return r
