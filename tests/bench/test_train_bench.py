"""Training benchmark: GEMM shapes, the timing rows and their ratios, memory, legacy ops."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

from tests.conftest import ROOT
from xnorlab.bench.train_bench import bench_cases, gemm_shapes, legacy_ops, run_train_bench
from xnorlab.models.build import build_model
from xnorlab.quant import binarizers

pytestmark = pytest.mark.slow  # trains models


@pytest.fixture(scope="module")
def base_cfg():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train_bench", overrides=["data.batch_size=16"])
    return cfg


def test_gemm_shapes_count_forward_and_backward_of_each_layer():
    model = build_model({"name": "mlp", "hidden": 32, "depth": 2}, "float")
    shapes = gemm_shapes(model, torch.rand(5, 1, 28, 28))
    # forward + grad-weight for the first layer, plus grad-input for the other two
    assert shapes == [(5, 784, 32), (32, 5, 784),
                      (5, 32, 32), (32, 5, 32), (5, 32, 32),
                      (5, 32, 10), (10, 5, 32), (5, 10, 32)]
    conv = build_model({"name": "cnn", "width": 2, "fc_width": 8}, "float")
    first = gemm_shapes(conv, torch.rand(3, 1, 28, 28))[0]
    assert first == (3 * 28 * 28, 9, 2)  # im2col: one row per output pixel


def test_legacy_ops_restore_the_fast_ones():
    fast = binarizers.sign
    x = torch.randn(100)
    with legacy_ops():
        assert binarizers.sign is not fast
        old = binarizers.sign(x)
    assert binarizers.sign is fast and torch.equal(old, fast(x))


def test_bench_rows_have_their_ratios_and_memory(base_cfg):
    from omegaconf import OmegaConf

    base = OmegaConf.masked_copy(base_cfg, [k for k in base_cfg if k != "bench"])
    runs = {
        "mnist-mlp-float": {"dataset": "mnist", "model": "mlp", "quant": "float",
                            "args": "model.hidden=16 model.depth=1 trainer.max_epochs=3"},
        "mnist-mlp-bnn": {"dataset": "mnist", "model": "mlp", "quant": "bnn",
                          "args": "model.hidden=16 model.depth=1"},
        "fashion_mnist-mlp-bnn": {"dataset": "fashion_mnist", "model": "mlp", "quant": "bnn",
                                  "args": ""},
        "mnist-kmeans-float": {"dataset": "mnist", "model": "kmeans", "quant": "float",
                               "args": ""},
    }
    cases = bench_cases(base, ROOT / "conf", runs, ["mnist"], compare_lean=True,
                        compare_before=True)
    assert sorted(cases) == ["mnist-mlp-bnn", "mnist-mlp-bnn:before", "mnist-mlp-bnn:std",
                             "mnist-mlp-float"]
    assert cases["mnist-mlp-bnn"]["model"]["hidden"] == 16
    assert cases["mnist-mlp-bnn:std"]["quant"]["lean_backward"] is False
    out = run_train_bench(cases, steps=2, warmup=1, repeats=2, epoch_examples=320,
                          memory_batches=[8])
    rows = out["rows"]
    for name, row in rows.items():
        for engine in ("lightning", "plain", "gemm"):
            assert 0 < row[engine]["best_s"] <= row[engine]["median_s"], (name, engine)
            assert row[engine]["repeats"] == 2
        assert row["lightning_over_gemm"] > 0 and row["plain_over_gemm"] > 0
    bnn = rows["mnist-mlp-bnn"]
    assert {"lightning_over_float", "lightning_over_std", "lightning_over_before"} <= set(bnn)
    assert rows["mnist-mlp-bnn:before"]["legacy_ops"] is True
    mem = out["memory"]
    assert set(mem) == {"mnist-mlp-float", "mnist-mlp-bnn", "mnist-mlp-bnn:std"}
    assert mem["mnist-mlp-bnn"]["b8"]["saved_bytes"] < mem["mnist-mlp-bnn:std"]["b8"][
        "saved_bytes"]
    assert mem["mnist-mlp-bnn"]["b8"]["param_bytes"] == mem["mnist-mlp-float"]["b8"][
        "param_bytes"]  # same layer shapes (no biases in either)


def test_bench_rejects_nonsense_settings():
    with pytest.raises(ValueError, match="steps"):
        run_train_bench({}, steps=0, warmup=0, repeats=1, epoch_examples=1, memory_batches=[])
