"""The binarized ViT as a version-2 graph: exact binary layers (BinaryConnect: within a stated
float tolerance), torch's predictions."""

import numpy as np
import pytest
import torch

from xnorlab.bench.vit_exactness import compare_vit
from xnorlab.models import build_model
from xnorlab.packed.engine import PackedEngine
from xnorlab.packed.export import ExportError
from xnorlab.packed.export_vit import export_vit, gelu_sign_table
from xnorlab.packed.graph import GraphEngine
from xnorlab.packed.layers import THRESH_MAX, THRESH_MIN
from xnorlab.packed.nodes import band_thresholds

SHAPE = (1, 14, 14)
# dim 40 and hidden 80: packed rows with padding bits; patch 4 drops the 14 % 4 remainder
VIT = {"name": "vit", "dim": 40, "depth": 2, "heads": 2, "patch_size": 4, "mlp_ratio": 2.0}


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, *SHAPE), generator=g).float() / 255.0  # u / 255, as the data
    return x, torch.randint(0, 10, (n,), generator=g)


def _trained(quant, **over):
    torch.manual_seed(0)
    model = build_model({**VIT, **over}, quant, input_shape=SHAPE, mean=0.13, std=0.31)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    x, y = _data(64, 1)
    for _ in range(4):  # a few steps: latent weights and LayerScale gains move off their init
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module", params=["bnn", "xnor"])
def vit(request, tmp_path_factory):
    model = _trained(request.param)
    path = tmp_path_factory.mktemp("vit") / "vit.xnor"
    export_vit(model, SHAPE, backend="numpy").save(path)
    return model, path


def test_binary_layers_exact_and_predictions_listed(vit):
    model, path = vit
    engine = PackedEngine.load(path, backend="numba", threads=1)
    assert isinstance(engine, GraphEngine) and len(engine.binary_nodes) == 8
    x, _ = _data(200, 2)
    r = compare_vit(model, engine, x, chunk=64)
    assert r.exact, r.as_dict()
    assert r.preactivation_values == 200 * 9 * (3 * 40 + 40 + 80 + 40) * 2
    assert r.folded_bits == 200 * 9 * 80 * 2
    # end to end: each differing prediction is listed (none expected on 200 images)
    assert r.mismatched_predictions == len(r.prediction_mismatches)
    assert r.mismatched_predictions == 0, r.prediction_mismatches
    assert r.max_score_error < 1e-4


def test_engines_agree_and_file_is_deterministic(vit, tmp_path):
    model, path = vit
    x, _ = _data(50, 3)
    u8 = torch.round(x * 255).to(torch.uint8).numpy()
    ref = PackedEngine.load(path, backend="numpy")
    fast = PackedEngine.load(path, backend="numba", threads=1)
    # the numba backend runs torch's LayerNorm and attention, which round otherwise
    assert np.allclose(ref.scores(u8), fast.scores(u8), rtol=1e-5, atol=1e-5)
    assert np.array_equal(ref.predict(u8), fast.predict(u8))
    for a, b in zip(ref.forward_int(u8), fast.forward_int(u8), strict=True):
        assert a.dtype == np.int32 and a.shape == b.shape
        assert np.count_nonzero(a != b) <= a.size // 1000
    assert np.array_equal(fast.predict(u8), np.argmax(fast.scores(u8), axis=1))
    assert ref.save(tmp_path / "again.xnor").read_bytes() == path.read_bytes()


def test_a_wrong_weight_bit_is_caught(vit):
    model, path = vit
    engine = PackedEngine.load(path, backend="numpy")
    engine.binary_nodes[3].weight[0, 0] ^= np.uint64(1)  # one +-1 weight of mlp.3 flipped
    r = compare_vit(model, engine, _data(20, 4)[0])
    assert not r.exact and r.mismatched_preactivations > 0


def test_gelu_sign_folds_into_a_band():
    """sign(GELU(z)) is +1 for z >= 0, -1 below, and +1 again where GELU underflows to -0.0
    (z below about -5.5): a bias of -5 puts that zone within reach of y."""
    model = _trained("bnn")
    lin1 = model.blocks[0].mlp[0]
    with torch.no_grad():
        lin1.bias.fill_(-5.0)
    table = gelu_sign_table(lin1, model.blocks[0].mlp[1], model.blocks[0].mlp[3].input_quantizer)
    thresh, low = band_thresholds(table, -lin1.in_features)
    assert (low > THRESH_MIN).all() and (thresh < THRESH_MAX).all()  # both sides reached
    r = compare_vit(model, export_vit(model, SHAPE, backend="numpy"), _data(30, 5)[0])
    assert r.exact, r.as_dict()


def test_band_thresholds_forms():
    y = np.arange(-4, 5)[:, None]
    table = np.concatenate([y >= 1, y <= -2, (y >= 3) | (y <= -3), y > 9, y < 9], axis=1)
    thresh, low = band_thresholds(table, -4)
    assert thresh.tolist() == [1, THRESH_MAX, 3, THRESH_MAX, THRESH_MIN]
    assert low.tolist() == [THRESH_MIN, -2, -3, THRESH_MIN, THRESH_MIN]
    assert band_thresholds(((y >= -1) & (y <= 1)), -4) is None  # a middle band is not one


def test_class_token_vit_raises():
    with pytest.raises(ExportError):
        export_vit(build_model({**VIT, "pool": "cls"}, "bnn", input_shape=SHAPE), SHAPE)


@pytest.fixture(scope="module", params=["bc_det", "bc_stoch"])
def bc_vit(request, tmp_path_factory):
    model = _trained(request.param)
    path = tmp_path_factory.mktemp("bc_vit") / "vit.xnor"
    export_vit(model, SHAPE, backend="numpy").save(path)
    return model, path


def test_binaryconnect_vit_within_tolerance_and_predictions_listed(bc_vit):
    model, path = bc_vit
    engine = PackedEngine.load(path, backend="numba", threads=1)
    assert [n.op for n in engine.binary_nodes] == ["bc_linear"] * 8
    x, _ = _data(200, 2)
    r = compare_vit(model, engine, x, chunk=64)
    assert r.exact, r.as_dict()
    # no integers, no signs: every bc_linear output checked against torch's, given its input
    assert r.preactivation_values == r.folded_bits == r.input_bits == 0
    assert r.real_output_values == 200 * 9 * (3 * 40 + 40 + 80 + 40) * 2
    assert 0 < r.max_real_preactivation_error < 1e-4  # a float32 sum vs a float64 one
    assert r.max_real_output_error < 1e-5 and r.scores_outside_tolerance == 0
    assert r.mismatched_predictions == len(r.prediction_mismatches) == 0, r.prediction_mismatches
    ref = PackedEngine.load(path, backend="numpy")
    u8 = torch.round(x * 255).to(torch.uint8).numpy()
    assert np.array_equal(ref.predict(u8), engine.predict(u8))
    assert ref.save(path.with_name("again.xnor")).read_bytes() == path.read_bytes()


def test_a_wrong_binaryconnect_weight_bit_is_caught(bc_vit):
    model, path = bc_vit
    engine = PackedEngine.load(path, backend="numpy")
    engine.binary_nodes[3].weight[0, 0] ^= np.uint64(1)  # one +-1 weight of mlp.3 flipped
    r = compare_vit(model, engine, _data(20, 4)[0])
    assert not r.exact and r.real_outputs_outside_tolerance > 0


def test_binaryconnect_weights_pack_32x():
    model = build_model({**VIT, "dim": 64, "depth": 1}, "bc_det", input_shape=SHAPE)
    engine = export_vit(model, SHAPE, backend="numpy")
    float_bytes = sum(4 * model.get_submodule(n.name).weight.numel()
                      for n in engine.binary_nodes)
    assert float_bytes == 32 * engine.binary_weight_bytes()  # dim 64, MLP 128: no padding


def test_cli_predicts_with_a_graph(vit, tmp_path, capsys):
    from xnorlab.cli import main
    from xnorlab.data.idx import write_idx

    model, path = vit
    images = np.random.default_rng(0).integers(0, 256, (5, 14, 14), dtype=np.uint8)
    write_idx(tmp_path / "x", images)
    assert main(["predict", str(path), str(tmp_path / "x")]) == 0
    with torch.no_grad():
        want = model(torch.from_numpy(images[:, None]).float() / 255).argmax(1).tolist()
    got = [int(line.split("\t")[1]) for line in capsys.readouterr().out.splitlines()]
    assert got == want


def test_activations_are_dropped_after_their_last_reader(vit):
    from xnorlab.packed.graph import last_reads

    eng = PackedEngine.load(vit[1], backend="numba", threads=1)
    done = last_reads(eng.nodes, eng.output)
    dropped = [name for names in done for name in names]
    assert sorted(dropped) == sorted({i for n in eng.nodes for i in n.inputs})  # each once
    assert eng.output not in dropped
    for k, names in enumerate(done):  # none read after it is dropped
        assert not any(name in n.inputs for n in eng.nodes[k + 1:] for name in names)
