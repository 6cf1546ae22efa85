"""Check a packed ViT graph against the torch ViT it was exported from.

Two levels (``docs/packed_format.md``, *Exactness of the ViT*):

* **given the same input bits** (must be exact): every binary linear's integer pre-activations
  from the engine's XNOR-popcount GEMM on torch's own input signs equal torch's
  ``F.linear(sign(x), sign(W))``; its float32 ``y * s + bias`` equals torch's layer output bit
  for bit; the folded ``sign(GELU(.))`` bits of the first MLP linear, from torch's ``y``, equal
  the signs torch feeds the second;
* **end to end**: the engine runs its own float32 LayerNorm, attention, patch embedding, so an
  input sign can differ where a real value lies within rounding of 0; every differing
  prediction is listed with both margins, and the differing input bits are counted.

A BinaryConnect layer (``bc_linear``: real input) has no integers: its ``y`` is a float32 GEMM
summed in another order than torch's. Given torch's own input, its ``y`` is compared with a
float64 sum (largest error reported) and its output (``y * s + bias``, GELU for the first MLP
linear) with torch's within the stated tolerance ``|e - t| <= ATOL + RTOL |t|``
(:data:`~xnorlab.bench.exactness.SCORE_RTOL` / ``SCORE_ATOL``): none outside it allowed. End to
end the scores outside that tolerance are counted and every differing prediction is listed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xnorlab.bench.exactness import SCORE_ATOL, SCORE_RTOL, to_uint8
from xnorlab.packed.bits import unpack_bits
from xnorlab.packed.graph import GraphEngine
from xnorlab.packed.nodes import BCLinear, BinaryLinear

__all__ = ["VitExactness", "compare_vit"]


@dataclass
class VitExactness:
    """Disagreements between a packed ViT and torch over ``n_images`` images."""

    n_images: int
    preactivation_values: int = 0
    mismatched_preactivations: int = 0  # same input bits: must be 0
    mismatched_affine_outputs: int = 0  # float32 y * s + bias vs torch's layer output
    folded_bits: int = 0
    mismatched_folded_bits: int = 0  # sign(GELU(.)) band vs torch
    input_bits: int = 0
    differing_input_bits: int = 0  # end to end: engine's own signs vs torch's
    real_output_values: int = 0  # bc_linear outputs, given torch's input
    real_outputs_outside_tolerance: int = 0  # must be 0
    max_real_output_error: float = 0.0
    max_real_preactivation_error: float = 0.0  # bc_linear y vs a float64 sum
    max_score_error: float = 0.0
    scores_outside_tolerance: int = 0  # end to end
    mismatched_predictions: int = 0
    prediction_mismatches: list[dict[str, float]] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        """Every binary layer exact given the same input bits (float rounding elsewhere)."""
        return not (self.mismatched_preactivations or self.mismatched_affine_outputs
                    or self.mismatched_folded_bits or self.real_outputs_outside_tolerance)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exact": self.exact,
                "tolerance": {"rtol": SCORE_RTOL, "atol": SCORE_ATOL}}


def _margin(s: np.ndarray) -> float:
    top2 = np.sort(s)[-2:]
    return float(top2[1] - top2[0])


class _Capture:
    """Forward hooks on the torch layers named like the graph's binary nodes."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        self.hooks = [model.get_submodule(n).register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name: str):
        def hook(mod, inputs, output):
            self.inputs[name] = inputs[0].detach()
            self.outputs[name] = output.detach()

        return hook

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()


def _torch_bits(mod: nn.Module, x: torch.Tensor) -> np.ndarray:
    return (mod.input_quantizer(x) > 0).numpy()


def _torch_signs(mod: nn.Module) -> torch.Tensor:
    """torch's eval-time +-1 kernel, float64."""
    return torch.where(mod.kernel_quantizer.split(mod.weight)[0] > 0, 1.0, -1.0).double()


def _outside(e: np.ndarray, t: np.ndarray) -> tuple[int, float]:
    """(count outside the stated tolerance, largest absolute difference)."""
    diff = np.abs(e.astype(np.float64) - t)
    return int(np.count_nonzero(diff > SCORE_ATOL + SCORE_RTOL * np.abs(t))), float(
        diff.max(initial=0.0))


def _check_bc(model: nn.Module, node: BCLinear, nodes: list, cap: _Capture,
              r: VitExactness) -> None:
    """A BinaryConnect node on torch's own input: ``y`` vs a float64 sum, output vs torch's
    within the tolerance (the first MLP linear's GELU output is what torch feeds the next)."""
    mod = model.get_submodule(node.name)
    x = cap.inputs[node.name]
    y64 = F.linear(x.double(), _torch_signs(mod)).numpy()
    src = np.ascontiguousarray(x.numpy())
    y = node.preactivations(src)
    r.max_real_preactivation_error = max(r.max_real_preactivation_error,
                                         float(np.abs(y - y64).max(initial=0.0)))
    out = node.forward([src], None, None)
    if node.gelu:  # torch's GELU output is the next linear's input (dropout is off in eval)
        want = cap.inputs[next(n.name for n in nodes if n.inputs == (node.name,))].numpy()
    else:
        want = cap.outputs[node.name].numpy()
    bad, err = _outside(out, want)
    r.real_outputs_outside_tolerance += bad
    r.max_real_output_error = max(r.max_real_output_error, err)
    r.real_output_values += want.size


def _check_layers(model: nn.Module, engine: GraphEngine, cap: _Capture, r: VitExactness) -> None:
    nodes = engine.binary_nodes
    for node in nodes:
        if isinstance(node, BCLinear):
            _check_bc(model, node, nodes, cap, r)
            continue
        mod = model.get_submodule(node.name)
        x = cap.inputs[node.name]
        bits = _torch_bits(mod, x)
        w = _torch_signs(mod)
        y_t = F.linear(torch.where(torch.from_numpy(bits), 1.0, -1.0).double(), w).numpy()
        src = np.ascontiguousarray(x.numpy() if node.real_input else _pack(bits))
        y_e = node.integers(src, engine.ops)
        r.mismatched_preactivations += int(np.count_nonzero(y_e != y_t))
        r.preactivation_values += y_t.size
        # the node's own forward (the fused kernels scores() runs) on torch's input
        out = node.forward([src], engine.ops, None)
        if node.outputs_bits:
            nxt = next(n for n in nodes if n.inputs == (node.name,))
            folded = unpack_bits(out, node.out_features).astype(bool)
            want = _torch_bits(model.get_submodule(nxt.name), cap.inputs[nxt.name])
            r.mismatched_folded_bits += int(np.count_nonzero(folded != want))
            r.folded_bits += want.size
        else:
            torch_z = cap.outputs[node.name].numpy()
            r.mismatched_affine_outputs += int(np.count_nonzero(out != torch_z))


def _pack(bits: np.ndarray) -> np.ndarray:
    from xnorlab.packed.bits import pack_bits

    return pack_bits(bits)


def _count_input_bits(engine: GraphEngine, u8: np.ndarray, model: nn.Module, cap: _Capture,
                      r: VitExactness) -> None:
    """End to end: the signs the engine itself feeds each real-input binary node vs torch's."""
    env: dict[str, np.ndarray] = {"input": u8}
    for node in engine.nodes:
        xs = [env[i] for i in node.inputs]
        if isinstance(node, BinaryLinear) and node.real_input:
            mine = xs[0] >= 0
            theirs = _torch_bits(model.get_submodule(node.name), cap.inputs[node.name])
            r.differing_input_bits += int(np.count_nonzero(mine != theirs))
            r.input_bits += mine.size
        env[node.name] = node.forward(xs, engine.ops, None)


@torch.no_grad()
def compare_vit(model: nn.Module, engine: GraphEngine, images: torch.Tensor,
                chunk: int = 500) -> VitExactness:
    """Engine vs torch on float images in [0, 1] (``u / 255``), see the module docstring."""
    model.eval()
    r = VitExactness(len(images))
    names = [n.name for n in engine.binary_nodes]
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk]
        u8 = to_uint8(x)
        cap = _Capture(model, names)
        try:
            ts = model(x).numpy()
        finally:
            cap.remove()
        _check_layers(model, engine, cap, r)
        _count_input_bits(engine, u8, model, cap, r)
        es = engine.scores(u8)
        bad, err = _outside(es, ts)
        r.scores_outside_tolerance += bad
        r.max_score_error = max(r.max_score_error, err)
        tp, ep = ts.argmax(1), es.argmax(1)
        for i in np.flatnonzero(tp != ep):
            r.prediction_mismatches.append({
                "index": start + int(i), "torch": int(tp[i]), "engine": int(ep[i]),
                "torch_margin": _margin(ts[i]), "engine_margin": _margin(es[i]),
            })
        r.mismatched_predictions += int(np.count_nonzero(tp != ep))
    return r
