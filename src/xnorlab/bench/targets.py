"""The ratios the packed engine is judged on, read from a benchmark report.

Each target comes from ``conf/benchmark.yaml`` (``targets``): a ``kind`` -- ``speedup``
(packed over float32 torch, images/s, at ``threads`` and ``batch``), ``scaling`` (packed at
2 threads over 1 thread at ``batch``), ``gemm_fraction`` (the fused hidden-layer GEMM's
fraction of the peak at ``threads``), ``size_ratio`` or ``binary_weight_ratio`` (float32 over
packed bytes of the binarized layers' weights, for a graph whose real layers stay float) -- the
``model`` it is about and the ``min`` it must reach. Every value is given for the best and for
the median repeats.
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
    return {"kind": kind, "model": spec.get("model"), "best": best, "median": med,
            "min": floor, "met": met, "met_by_median": None if med is None or floor is None
            else bool(med >= floor)}


def evaluate_all(report: Mapping[str, Any], specs: Mapping[str, Mapping[str, Any]]
                 ) -> dict[str, dict[str, Any]]:
    """Every configured target, by name."""
    return {name: evaluate(report, spec) for name, spec in specs.items()}
