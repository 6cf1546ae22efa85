"""The ratios the packed engine is judged on, read from a benchmark report.

Each target comes from ``conf/benchmark.yaml`` (``targets``): a ``kind`` -- ``speedup``
(packed over float32 torch, images/s, at ``threads`` and ``batch``), ``scaling`` (packed at
2 threads over 1 thread at ``batch``), ``gemm_fraction`` (the fused hidden-layer GEMM's
fraction of the peak at ``threads``), ``size_ratio`` or ``binary_weight_ratio`` (float32 over
packed bytes of the binarized layers' weights, for a graph whose real layers stay float) -- the
``model`` it is about and the ``min`` it must reach. Every value is given for the best and for
the median repeats.

A ``speedup`` target also gets a ``ceiling`` where the model has a per-layer table at its
threads and batch: the speed-up if every binary layer ran at the machine's measured
XOR+popcount peak while the other steps (the uint8 first layer, real layers) kept their
measured times. A floor above the ceiling cannot be met by a faster popcount kernel on this
machine; the table says which step stands in the way. A ``scaling`` target also gets the
``machine_scaling`` measured just before and after its model's timings (peak XOR+popcount on
2 cores over 1; else the benchmark's start and end): on a shared machine the cores themselves
may give less than 2x at the time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FAST, FLOAT = "packed_fast", "torch_float32"


def _pick(rows: list[dict[str, Any]], engine: str, threads: int, batch: int) -> dict | None:
    return next((r for r in rows if r["engine"] == engine and r["threads"] == threads
                 and r["batch"] == batch), None)


def _ratio(num: dict | None, den: dict | None) -> tuple[float | None, float | None]:
    if num is None or den is None:
        return None, None
    return (num["images_per_s_best"] / den["images_per_s_best"],
            num["images_per_s_median"] / den["images_per_s_median"])


def popcount_ceiling(entry: Mapping[str, Any], threads: int, batch: int) -> float | None:
    """Float32 torch's best time over the per-layer table's times with every binary layer at
    the peak (never slower than measured); None without that table or torch figure."""
    table = next((t for t in entry.get("layer_tables", [])
                  if t["threads"] == threads and t["batch"] == batch), None)
    torch_row = _pick(entry.get("results", []), FLOAT, threads, batch)
    if table is None or torch_row is None:
        return None
    total = 0.0
    for row in table["layers"]:
        at_peak = (row["macs_per_image"] * batch / table["peak_bitops_per_s"]
                   if "fraction_of_peak" in row else row["best_s"])
        total += min(row["best_s"], at_peak)
    return torch_row["best_s"] / total if total > 0 else None


def evaluate(report: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """One target's ``{best, median, min, met}`` (``met`` None where it was not measured)."""
    kind = spec["kind"]
    entry = report.get("models", {}).get(spec.get("model") or "", {})
    rows = entry.get("results", [])
    if kind == "speedup":
        best, med = _ratio(_pick(rows, FAST, spec["threads"], spec["batch"]),
                           _pick(rows, FLOAT, spec["threads"], spec["batch"]))
    elif kind == "scaling":
        best, med = _ratio(_pick(rows, FAST, 2, spec["batch"]),
                           _pick(rows, FAST, 1, spec["batch"]))
    elif kind == "gemm_fraction":
        g = report.get("gemm", {}).get(f"threads_{spec['threads']}", {})
        g = g.get("xnor_gemm_threshold", {})
        best, med = g.get("fraction_of_peak"), g.get("fraction_of_peak_median")
    elif kind in ("size_ratio", "binary_weight_ratio"):
        best = med = entry.get(kind)
    else:
        raise ValueError(f"unknown target kind {kind!r}")
    floor = spec.get("min")
    met = None if best is None or floor is None else bool(best >= floor)
    out = {"kind": kind, "model": spec.get("model"), "best": best, "median": med,
           "min": floor, "met": met, "met_by_median": None if med is None or floor is None
           else bool(med >= floor)}
    if kind == "speedup":
        out["ceiling"] = popcount_ceiling(entry, spec["threads"], spec["batch"])
    if kind == "scaling":  # what the cores gave a pure compute loop around the model's timings
        machine = report.get("machine_scaling", {})
        out["machine_scaling"] = entry.get(
            "machine_scaling", [machine[k] for k in ("start", "end") if k in machine])
    return out


def evaluate_all(report: Mapping[str, Any], specs: Mapping[str, Mapping[str, Any]]
                 ) -> dict[str, dict[str, Any]]:
    """Every configured target, by name."""
    return {name: evaluate(report, spec) for name, spec in specs.items()}
