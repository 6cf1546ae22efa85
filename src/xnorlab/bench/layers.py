"""Per-layer time table of a packed engine: where a forward pass spends its time.

Each step of :attr:`PackedEngine.steps` (a conv with its fused pool counts as one) is timed on
its own real input, over the same chunks the engine uses, through its prepared runner as
:meth:`PackedEngine.scores` runs it (the checked ``forward`` where it has none), and
compared with the work it does: binary MACs (XOR + popcount bits) for binary-input layers,
8-bit MACs for the uint8 first layer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xnorlab.bench.timing import time_calls
from xnorlab.packed.engine import PackedEngine
from xnorlab.packed.layers import Act, Conv2d, Dense, Layer


def _macs_per_image(layer: Layer, a: Act) -> int:
    """Multiply-accumulates per image of a compute layer on input ``a`` (0 for the others)."""
    if isinstance(layer, Dense):
        return layer.in_features * layer.out_features
    if isinstance(layer, Conv2d):
        h, w = a.data.shape[2:4] if layer.uint8_input else a.data.shape[1:3]
        ho, wo = layer._out_hw(h, w)
        return ho * wo * layer.out_channels * layer.fan_in
    return 0


def _describe(layer: Layer, kwargs: dict[str, Any]) -> str:
    if isinstance(layer, Dense):
        kind = "uint8" if layer.uint8_input else "binary"
        out = "bits" if layer.outputs_bits else "scores"
        return f"dense {kind} {layer.in_features}->{layer.out_features} ({out})"
    if isinstance(layer, Conv2d):
        kind = "uint8" if layer.uint8_input else "binary"
        pool = kwargs.get("pool")
        tail = f" + OR-pool {pool[0]}x{pool[1]}" if pool else ""
        k = "x".join(map(str, layer.kernel))
        return f"conv {kind} {k} {layer.in_channels}->{layer.out_channels}{tail}"
    return layer.type_name


def layer_table(
    engine: PackedEngine,
    u8: np.ndarray,
    peak_bitops_per_s: float,
    repeats: int = 3,
    min_seconds: float = 0.05,
) -> dict[str, Any]:
    """Time every step of ``engine`` on the batch ``u8`` (at the engine's current threads).

    Returns ``{"batch", "total_best_s", "layers": [...]}`` with, per step, best and median
    seconds per batch, the share of the summed best times, MACs per image, MAC/s and, for
    binary-input layers, the fraction of ``peak_bitops_per_s`` (a uint8 layer's 8-bit MACs are
    not popcount work: their fraction is left out and ``int8_macs_per_s`` given instead).
    """
    chunks = [u8[sl] for sl in engine._chunks(u8.shape[0])]
    acts = [Act("u8", np.ascontiguousarray(c)) for c in chunks]
    rows = []
    for layer, kwargs in engine.steps:
        inputs = acts
        # what scores() runs: the step's prepared runner where it has one
        runners = [layer.runner(engine.ops, a, **kwargs) for a in inputs]

        def run(inputs=inputs, layer=layer, kwargs=kwargs, runners=runners) -> None:
            for a, r in zip(inputs, runners, strict=True):
                if r is None:
                    layer.forward(a, engine.ops, False, **kwargs)
                else:
                    r(a.data)

        _, per_call = time_calls(run, repeats, min_seconds)
        acts = [layer.forward(a, engine.ops, False, **kwargs)[0] for a in inputs]
        macs = _macs_per_image(layer, inputs[0])
        best, med = min(per_call), float(np.median(per_call))
        row: dict[str, Any] = {"layer": _describe(layer, kwargs), "best_s": best,
                               "median_s": med, "macs_per_image": macs}
        if macs:
            rate = macs * u8.shape[0] / best
            if getattr(layer, "uint8_input", False):
                row["int8_macs_per_s"] = rate
            else:
                row["binary_macs_per_s"] = rate
                row["fraction_of_peak"] = rate / peak_bitops_per_s
        rows.append(row)
    total = sum(r["best_s"] for r in rows)
    for r in rows:
        r["share"] = r["best_s"] / total if total else 0.0
    return {"batch": int(u8.shape[0]), "threads": engine.threads, "total_best_s": total,
            "peak_bitops_per_s": peak_bitops_per_s, "layers": rows}


def format_table(table: dict[str, Any]) -> str:
    """The table as Markdown (for logs and the closing note)."""
    lines = [f"batch {table['batch']}, peak {table['peak_bitops_per_s'] / 1e12:.2f} T bit-op/s",
             "| layer | best ms | median ms | share | G MAC/s | of peak |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in table["layers"]:
        rate = r.get("binary_macs_per_s", r.get("int8_macs_per_s"))
        frac = r.get("fraction_of_peak")
        lines.append(
            f"| {r['layer']} | {1e3 * r['best_s']:.3f} | {1e3 * r['median_s']:.3f} | "
            f"{100 * r['share']:.1f}% | {'' if rate is None else f'{rate / 1e9:.0f}'}"
            f"{' (int8)' if 'int8_macs_per_s' in r else ''} | "
            f"{'' if frac is None else f'{frac:.2f}'} |")
    return "\n".join(lines)
