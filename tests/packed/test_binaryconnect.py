"""BinaryConnect (binary weights, real Hardtanh activations) in the packed engine."""

import numpy as np
import pytest
import torch

from xnorlab.bench.exactness import compare
from xnorlab.models import build_model
from xnorlab.packed.engine import PackedEngine
from xnorlab.packed.export import export_model, export_to_file
from xnorlab.packed.real_layers import RealConv2d, RealDense
from xnorlab.train.measure import state_dict_bytes

from .test_export import _images, _randomize, _to_torch

SHAPE = (1, 28, 28)


@pytest.mark.parametrize("quant", ["bc_det", "bc_stoch"])
@pytest.mark.parametrize("cfg", [
    {"name": "mlp", "hidden": 96, "depth": 2},
    {"name": "logreg"},
    {"name": "cnn", "width": 8, "fc_width": 48, "fc_depth": 1},
])
def test_binaryconnect_matches_torch(cfg, quant):
    torch.manual_seed(0)
    model = build_model(cfg, quant, input_shape=SHAPE)
    u = _images(SHAPE, 300, seed=4)
    _randomize(model, u, seed=3, exact_ties=False)
    eng = export_model(model, SHAPE, backend="numpy")
    # logreg has no hidden activation: its one layer is the plain uint8 dense layer
    real = all(isinstance(m, RealDense | RealConv2d) for m in eng.compute_layers)
    assert real == (cfg["name"] != "logreg")
    r = compare(model, eng, _to_torch(u), chunk=128)
    # the first layer's pre-activations are integers (8-bit pixels) and must be equal
    assert r.mismatched_preactivations == 0
    assert r.preactivation_values == 300 * eng.forward_int(u[:1])[0].size
    assert (r.real_preactivation_values > 0) == (cfg["name"] != "logreg")
    assert r.max_real_preactivation_error < 1e-3, r.as_dict()
    assert r.scores_outside_tolerance == 0, r.as_dict()
    assert r.mismatched_predictions == 0, r.prediction_mismatches
    fast = export_model(model, SHAPE, backend="numba")
    np.testing.assert_array_equal(fast.predict(u), eng.predict(u))


def test_binaryconnect_file_is_25x_smaller(tmp_path):
    """The suite's MLP (3 x 1024) under bc_det: 1-bit weights, float32 scale/shift."""
    model = build_model({"name": "mlp", "hidden": 1024, "depth": 3}, "bc_det", input_shape=SHAPE)
    u = _images(SHAPE, 64, seed=1)
    _randomize(model, u, seed=5, exact_ties=False)
    path = export_to_file(model, tmp_path / "bc.xnor", SHAPE)
    ratio = state_dict_bytes(model) / path.stat().st_size
    assert ratio >= 25, ratio
    eng = PackedEngine.load(path)
    with torch.no_grad():
        want = model(_to_torch(u)).numpy().argmax(1)
    assert np.array_equal(eng.predict(u), want)
