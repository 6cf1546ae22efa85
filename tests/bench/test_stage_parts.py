"""Per-layer tables, targets, the machine fingerprint and the benchmark config schema."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from xnorlab.bench import machine
from xnorlab.bench.layers import format_table, layer_table
from xnorlab.bench.targets import evaluate, evaluate_all
from xnorlab.models.build import build_model
from xnorlab.packed.export import export_model
from xnorlab.schema import BenchmarkConfig, ConfigError, validate


def _bnn(model_cfg, shape):
    torch.manual_seed(0)
    model = build_model(model_cfg, "bnn", shape, 10).eval()
    return export_model(model, shape)


@pytest.mark.parametrize("model_cfg,shape,kinds", [
    ({"name": "mlp", "hidden": 40, "depth": 2}, (1, 28, 28), ["uint8", "binary", "binary"]),
    ({"name": "cnn", "width": 4}, (1, 28, 28), None),
])
def test_layer_table_times_every_step(model_cfg, shape, kinds):
    engine = _bnn(model_cfg, shape)
    u8 = np.random.default_rng(0).integers(0, 256, (5, *shape), dtype=np.uint8)
    table = layer_table(engine, u8, peak_bitops_per_s=1e12, repeats=2, min_seconds=0.001)
    rows = table["layers"]
    assert len(rows) == len(engine.steps) and table["batch"] == 5
    assert np.isclose(sum(r["share"] for r in rows), 1.0)
    compute = [r for r in rows if r["macs_per_image"]]
    assert len(compute) == len(engine.compute_layers)
    assert "int8_macs_per_s" in compute[0] and "fraction_of_peak" not in compute[0]
    assert all(0 < r["fraction_of_peak"] for r in compute[1:])
    if kinds:
        assert [r["layer"].split()[1] for r in compute] == kinds
    else:  # the CNN: every pool is fused into its conv
        assert any("OR-pool" in r["layer"] for r in rows)
        assert not any(r["layer"] == "maxpool2d" for r in rows)
    md = format_table(table)
    assert md.count("\n") == len(rows) + 2


def _rows(fast_best, fast_med, torch_best, torch_med, threads=1, batch=64):
    return [{"engine": "packed_fast", "threads": threads, "batch": batch,
             "images_per_s_best": fast_best, "images_per_s_median": fast_med},
            {"engine": "torch_float32", "threads": threads, "batch": batch,
             "images_per_s_best": torch_best, "images_per_s_median": torch_med}]


def test_targets_give_best_and_median_and_whether_met():
    report = {"models": {"m": {"results": _rows(1300, 1000, 100, 100)
                                + _rows(2500, 1500, 150, 150, threads=2), "size_ratio": 30.0,
                                "binary_weight_ratio": 19.0}},
              "gemm": {"threads_1": {"xnor_gemm_threshold": {"fraction_of_peak": 0.8,
                                                             "fraction_of_peak_median": 0.7}}}}
    t = evaluate(report, {"kind": "speedup", "model": "m", "threads": 1, "batch": 64, "min": 12})
    assert (t["best"], t["median"], t["met"], t["met_by_median"]) == (13.0, 10.0, True, False)
    s = evaluate(report, {"kind": "scaling", "model": "m", "batch": 64, "min": 1.8})
    assert np.isclose(s["best"], 2500 / 1300) and s["met"]
    g = evaluate(report, {"kind": "gemm_fraction", "threads": 1, "min": 0.75})
    assert (g["best"], g["median"], g["met"]) == (0.8, 0.7, True)
    w = evaluate(report, {"kind": "binary_weight_ratio", "model": "m", "min": 20})
    assert (w["best"], w["met"]) == (19.0, False)
    missing = evaluate_all(report, {"x": {"kind": "speedup", "model": "absent", "threads": 1,
                                          "batch": 1, "min": 2}})["x"]
    assert missing["best"] is None and missing["met"] is None
    with pytest.raises(ValueError, match="unknown target kind"):
        evaluate(report, {"kind": "nope"})


def test_speedup_ceiling_puts_binary_layers_at_the_peak_and_keeps_the_rest():
    table = {"threads": 1, "batch": 64, "peak_bitops_per_s": 1e9, "layers": [
        {"layer": "dense uint8", "best_s": 0.3, "macs_per_image": 10, "int8_macs_per_s": 1.0},
        {"layer": "dense binary", "best_s": 0.5, "macs_per_image": 1e6,
         "fraction_of_peak": 0.128},      # 0.064 s at the peak
        {"layer": "dense binary", "best_s": 0.01, "macs_per_image": 1e6,
         "fraction_of_peak": 6.4}]}       # already faster than the peak: kept as measured
    rows = _rows(100, 90, 10, 9)
    rows[1]["best_s"] = 6.4 / 10          # torch: 64 images at 10 images/s
    report = {"models": {"m": {"results": rows, "layer_tables": [table]}}}
    spec = {"kind": "speedup", "model": "m", "threads": 1, "batch": 64, "min": 12}
    assert np.isclose(evaluate(report, spec)["ceiling"], 0.64 / (0.3 + 0.064 + 0.01))
    assert evaluate(report, {**spec, "batch": 1})["ceiling"] is None  # no table there
    scaling = evaluate(report, {"kind": "scaling", "model": "m", "batch": 64})
    assert "ceiling" not in scaling and scaling["machine_scaling"] == []
    report["machine_scaling"] = {"threads": 2, "start": 1.9, "end": 1.6}
    scaling = evaluate(report, {"kind": "scaling", "model": "m", "batch": 64})
    assert scaling["machine_scaling"] == [1.9, 1.6]
    report["models"]["m"]["machine_scaling"] = [1.5, 1.97]  # around the model's own timings
    scaling = evaluate(report, {"kind": "scaling", "model": "m", "batch": 64})
    assert scaling["machine_scaling"] == [1.5, 1.97]


def test_machine_fingerprint_is_written_and_stable(tmp_path):
    out = tmp_path / "m.json"
    assert machine.main([str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["cores"] >= 1 and data["cpu"] and data["flags"] == sorted(data["flags"])
    before = out.stat().st_mtime_ns
    assert machine.main([str(out)]) == 0 and out.stat().st_mtime_ns == before  # unchanged
    assert machine.main([]) == 2


def test_benchmark_config_validates_and_rejects_typos():
    conf = str(_conf_dir())
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        cfg = validate(compose("benchmark"), BenchmarkConfig, "benchmark")
        assert cfg.targets.paper_mlp_speedup_b1024_t1.min == 15
        assert {t.kind for t in cfg.targets.values()} <= {
            "speedup", "scaling", "gemm_fraction", "size_ratio", "binary_weight_ratio"}
        with pytest.raises(ConfigError, match="benchmark"):
            validate(compose("benchmark", overrides=["+repats=3"]), BenchmarkConfig, "benchmark")
        with pytest.raises(ConfigError, match="benchmark"):
            validate(compose("benchmark", overrides=["+targets.x={min:1}"]), BenchmarkConfig,
                     "benchmark")


def _conf_dir():
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "conf"


def test_a_graph_engine_is_timed_like_any_packed_model():
    """The ViT's version-2 graph goes through the benchmark's timing and reference paths."""
    import torch

    from xnorlab.bench.stage import reference_engine
    from xnorlab.bench.timing import benchmark_model
    from xnorlab.models import build_model
    from xnorlab.packed.export_vit import export_vit
    from xnorlab.packed.graph import GraphEngine

    cfg = {"name": "vit", "dim": 16, "depth": 1, "heads": 2, "patch_size": 7}
    vit = build_model(cfg, "bnn", input_shape=(1, 14, 14)).eval()
    engine = export_vit(vit, (1, 14, 14), threads=1)
    ref = reference_engine(engine)
    assert isinstance(ref, GraphEngine) and ref.backend == "numpy"
    images = torch.rand(3, 1, 14, 14)
    rows = benchmark_model(vit, engine, images, [1, 4], [1], repeats=1, min_seconds=0.01,
                           reference=ref)
    assert {(r["engine"], r["batch"]) for r in rows} == {
        (e, b) for e in ("torch_float32", "packed_fast", "packed_numpy") for b in (1, 4)}
