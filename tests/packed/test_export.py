"""Engine vs torch (eval mode): same integer pre-activations in every layer, same classes."""

import numpy as np
import pytest
import torch
from torch import nn

from xnorlab.models import build_model
from xnorlab.packed.engine import PackedEngine
from xnorlab.packed.export import (
    ExportError,
    derive_thresholds,
    export_model,
    export_to_file,
    torch_integer_preactivations,
)
from xnorlab.packed.layers import THRESH_MAX, THRESH_MIN
from xnorlab.quant.layers import is_binary_layer

MODELS = {
    "mlp": ({"name": "mlp", "hidden": 96, "depth": 2}, (1, 28, 28)),
    "logreg": ({"name": "logreg"}, (1, 28, 28)),
    "cnn28": ({"name": "cnn", "width": 8, "fc_width": 48, "fc_depth": 1}, (1, 28, 28)),
    "cnn32": ({"name": "cnn", "width": 8, "fc_width": 40, "fc_depth": 1}, (3, 32, 32)),
    # multi-word channel groups with padding bits (40, 80, 160 channels), odd pooling sizes
    "cnn_wide": ({"name": "cnn", "width": 40, "fc_width": 70, "fc_depth": 1}, (2, 18, 18)),
}


def _images(shape, n, seed):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    u[0] = 0
    u[1] = 255
    return u


def _to_torch(u):
    return torch.from_numpy(u).float() / 255.0  # what the torch model takes


def _randomize(model, u, seed, exact_ties=True):
    """Random +-latent weights; BN stats from data, then perturbed; random gammas (some < 0,
    some 0) and betas; with ``exact_ties`` a few channels with BN(y) = 0 exactly at a reachable
    integer y (sign(0) = +1 decides)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if is_binary_layer(m):
                m.weight.uniform_(-1, 1, generator=g)
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.momentum = 1.0
        model.train()
        model(_to_torch(u))  # running stats = batch stats
        model.eval()
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                c = m.num_features
                std = m.running_var.sqrt()
                m.running_mean += 0.5 * std * torch.randn(c, generator=g)
                m.running_var *= torch.empty(c).uniform_(0.5, 2.0, generator=g)
                m.weight.copy_(torch.empty(c).uniform_(-2, 2, generator=g))
                m.bias.copy_(torch.empty(c).uniform_(-1, 1, generator=g))
                m.weight[0] = 0.0  # constant channel: always (beta >= 0) / never
                m.bias[0] = 0.5 if c % 2 else -0.5
                if exact_ties and c > 3:  # exact zero of BN at an integer (sign(0) = +1)
                    m.running_mean[1:3] = torch.round(m.running_mean[1:3])
                    m.bias[1:3] = 0.0
                    m.weight[2] = -abs(float(m.weight[2])) - 0.1


@pytest.mark.parametrize("quant", ["bnn", "xnor"])
@pytest.mark.parametrize("name", list(MODELS))
def test_engine_matches_torch(name, quant):
    cfg, shape = MODELS[name]
    torch.manual_seed(0)
    model = build_model(cfg, quant, input_shape=shape)
    u = _images(shape, 48, seed=len(name))
    # XNOR: torch sums alpha-scaled weights in float, so a pre-activation that is exactly 0 in
    # integers comes out as +-1e-7 in torch (summation-order noise). An exact BN zero at an
    # integer is then undecidable from y alone: only bnn gets those tie channels (see docs).
    _randomize(model, u, seed=7, exact_ties=quant == "bnn")
    eng = export_model(model, shape)
    x = _to_torch(u)
    with torch.no_grad():
        torch_scores = model(x).numpy()
    want = torch_integer_preactivations(model, x)
    got = eng.forward_int(u)
    assert len(got) == len(want) == len(eng.compute_layers)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.shape == b.shape, i
        assert np.array_equal(a, b), f"layer {i}: {(a != b).sum()} mismatches"
    scores = eng.scores(u)
    np.testing.assert_allclose(
        scores, torch_scores, rtol=1e-4, atol=1e-3 * np.abs(torch_scores).max()
    )
    assert np.array_equal(eng.predict(u), torch_scores.argmax(1))
    ref = export_model(model, shape, backend="numpy", verify=False)
    assert np.array_equal(ref.scores(u), scores)


@pytest.mark.parametrize("name", ["mlp", "cnn28"])
def test_small_batches_take_other_kernels_with_the_same_results(name):
    # batches of 1-5 run the first layer on bit planes (column kernel), a batch of 48 on the
    # int8 GEMM: every pre-activation and score of each sample must agree
    cfg, shape = MODELS[name]
    torch.manual_seed(1)
    model = build_model(cfg, "bnn", input_shape=shape)
    u = _images(shape, 48, seed=5)
    _randomize(model, u, seed=2)
    eng = export_model(model, shape)
    whole_ints, whole_scores = eng.forward_int(u), eng.scores(u)
    for lo, hi in [(0, 1), (1, 3), (3, 6), (6, 13)]:
        for part, whole in zip(eng.forward_int(u[lo:hi]), whole_ints, strict=True):
            assert np.array_equal(part, whole[lo:hi]), (lo, hi)
        assert np.array_equal(eng.scores(u[lo:hi]), whole_scores[lo:hi]), (lo, hi)


def test_bits_not_degenerate():
    cfg, shape = MODELS["mlp"]
    model = build_model(cfg, "bnn", input_shape=shape)
    u = _images(shape, 64, seed=3)
    _randomize(model, u, seed=1)
    eng = export_model(model, shape)
    for layer, y in zip(eng.compute_layers[:-1], eng.forward_int(u), strict=False):
        fire = np.where(layer.flip, y <= layer.thresh, y >= layer.thresh)
        assert 0.2 < fire.mean() < 0.8
        assert layer.flip.any() and not layer.flip.all()


def test_export_file_roundtrip(tmp_path):
    cfg, shape = MODELS["cnn28"]
    model = build_model(cfg, "bnn_stoch", input_shape=shape)
    u = _images(shape, 16, seed=5)
    _randomize(model, u, seed=2)
    path = export_to_file(model, tmp_path / "m.xnor", shape, config={"model": cfg})
    eng = PackedEngine.load(path, backend="numba")
    with torch.no_grad():
        want = model(_to_torch(u)).numpy().argmax(1)
    assert np.array_equal(eng.predict(u), want)
    assert eng.metadata["config"]["model"]["name"] == "cnn"
    assert "torch" in eng.metadata["versions"]
    assert eng.model_bytes() < sum(p.numel() * 4 for p in model.parameters())


def test_derive_thresholds():
    # channel 0: y >= 3; 1: y <= -2 (flip); 2: always; 3: never
    def fire(y):
        y = y.to(torch.float64)
        return torch.stack([y[:, 0] >= 3, y[:, 1] <= -2, y[:, 2] > -99, y[:, 3] > 99], dim=1)

    t, f = derive_thresholds(fire, 4, -10, 10)
    assert t.tolist() == [3, -2, THRESH_MIN, THRESH_MAX]
    assert f.tolist() == [False, True, False, False]


@pytest.mark.parametrize(("name", "quant"), [("mlp", "float"), ("cnn28", "float")])
def test_not_exportable(name, quant):
    cfg, shape = MODELS[name]
    with pytest.raises(ExportError):
        export_model(build_model(cfg, quant, input_shape=shape), shape)


def test_activation_scale_not_exportable():
    from xnorlab.quant.config import QuantConfig

    q = QuantConfig(
        name="x",
        weight_quantizer="xnor_weight",
        activation_quantizer="ste_sign",
        activation_scale=True,
    )
    cfg, shape = MODELS["mlp"]
    with pytest.raises(ExportError, match="activation_scale"):
        export_model(build_model(cfg, q, input_shape=shape), shape)


@pytest.mark.parametrize("name", ["mlp", "cnn28", "cnn_wide"])
def test_prepared_passes_give_the_checked_path_results(name):
    """The numba engine runs each input shape through prepared runners (built on first use,
    kept per shape and thread count, at most MAX_PLANS of them): its scores equal the numpy
    reference's at every batch size and thread count, in any order of calls."""
    cfg, shape = MODELS[name]
    torch.manual_seed(2)
    model = build_model(cfg, "bnn", input_shape=shape)
    u = _images(shape, 40, seed=3)
    _randomize(model, u, seed=4)
    ref = export_model(model, shape, backend="numpy", verify=False)
    want = ref.scores(u)
    for threads in (1, 2):
        eng = export_model(model, shape, threads=threads, verify=False)
        for lo, hi in [(0, 40), (0, 1), (5, 8), (0, 40), (9, 10)]:
            assert np.array_equal(eng.scores(u[lo:hi]), want[lo:hi]), (threads, lo, hi)
        assert len(eng._plans) == 3 and all(p is not None for p in eng._plans.values())
    eng.MAX_PLANS = 2
    for n in (1, 2, 3):
        assert np.array_equal(eng.scores(u[:n]), want[:n])
    assert len(eng._plans) <= 2
    # the dense layer after a flatten of < 64 channels per pixel word reads them compacted
    compacted = [layer for layer in eng.layers if getattr(layer, "_compact", None)]
    assert bool(compacted) == (name == "cnn28")
