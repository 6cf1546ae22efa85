"""Exactness check and timing harness on a small random BNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xnorlab.bench.exactness import compare
from xnorlab.bench.timing import benchmark_model, inference_peak_rss, interleaved
from xnorlab.models.build import build_model
from xnorlab.packed.engine import PackedEngine
from xnorlab.packed.export import export_model


@pytest.fixture(scope="module")
def small_bnn():
    torch.manual_seed(0)
    model = build_model({"name": "mlp", "hidden": 48, "depth": 2}, "bnn", (1, 28, 28), 10)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0, 3)
                m.weight.normal_()
    model.eval()
    return model, export_model(model, (1, 28, 28))


def test_compare_finds_no_disagreement_on_an_exported_model(small_bnn):
    model, engine = small_bnn
    result = compare(model, engine, torch.rand(40, 1, 28, 28), chunk=16)
    assert result.exact and result.n_images == 40
    assert result.preactivation_values == 40 * (48 + 48 + 10)


def test_compare_detects_a_corrupted_threshold(small_bnn):
    model, engine = small_bnn
    layers = [type(m).from_spec(m.params(), {k: v.copy() for k, v in m.arrays().items()})
              for m in engine.layers]
    first = next(m for m in layers if getattr(m, "thresh", None) is not None)
    first.thresh[:] = 0  # no longer what BatchNorm + sign decide
    broken = PackedEngine(layers, engine.input_shape)
    result = compare(model, broken, torch.rand(40, 1, 28, 28))
    assert not result.exact and result.mismatched_preactivations > 0


def test_benchmark_rows_cover_every_engine_batch_and_thread(small_bnn):
    model, engine = small_bnn
    reference = PackedEngine(engine.layers, engine.input_shape, backend="numpy")
    rows = benchmark_model(model, engine, torch.rand(8, 1, 28, 28), batches=[1, 8],
                           threads=[1], repeats=2, min_seconds=0.001, reference=reference)
    seen = {(r["engine"], r["batch"]) for r in rows}
    assert seen == {(e, b) for e in ("torch_float32", "packed_fast", "packed_numpy")
                    for b in (1, 8)}
    for r in rows:
        assert r["images_per_s_best"] >= r["images_per_s_median"] > 0
        assert np.isclose(r["images_per_s_best"], r["batch"] / r["best_s"])


def test_interleaved_times_the_engines_in_alternating_rounds():
    log: list[str] = []
    fns = {name: (lambda name=name: log.append(name)) for name in ("a", "b")}
    timed = interleaved(fns, repeats=3, min_seconds=0.0)
    calls = {name: timed[name][0] for name in fns}
    warm = len(log) - 3 * sum(calls.values())
    rounds = log[warm:]
    expected = (["a"] * calls["a"] + ["b"] * calls["b"]) * 3
    assert rounds == expected
    assert all(len(secs) == 3 and min(secs) > 0 for _, secs in timed.values())


def test_inference_peak_rss_reports_both_engines(small_bnn):
    model, engine = small_bnn
    rss = inference_peak_rss(model, engine, torch.rand(8, 1, 28, 28), batch=8)
    assert rss["torch_float32_peak_rss_mb"] > 0 and rss["packed_fast_peak_rss_mb"] > 0
    assert rss["packed_fast_rss_rise_mb"] >= 0


def test_float_twin_has_the_same_shapes_in_float():
    from xnorlab.bench.baseline import float_twin
    from xnorlab.quant.layers import is_binary_layer

    twin = float_twin({"name": "cnn", "width": 8, "fc_width": 16}, (1, 28, 28), 10)
    binary = build_model({"name": "cnn", "width": 8, "fc_width": 16}, "bnn", (1, 28, 28), 10)
    shapes = [p.shape for p in twin.parameters()]
    assert shapes == [p.shape for p in binary.parameters()]
    assert not any(is_binary_layer(m) and m.binary_kernel for m in twin.modules())
    assert not twin.training
