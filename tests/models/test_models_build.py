"""Every model x quant builds, runs, has the exportable structure, and trains a little."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from xnorlab.models import (
    MODEL_CONFIGS,
    KMeans,
    ViT,
    build_model,
    to_model_config,
)
from xnorlab.models.vit import ScaledBinaryLinear
from xnorlab.quant import (
    BinaryConv2d,
    BinaryLinear,
    Normalize,
    Quantize8bit,
    available_presets,
    clip_latent_weights,
    glorot_lr_scale,
    init_latent_uniform,
    is_binary_layer,
    quant_preset,
    sign,
)

CONF = Path(__file__).resolve().parents[2] / "conf"
QUANTS = available_presets()
SHAPES = [(1, 28, 28), (3, 32, 32)]
SMALL = {
    "logreg": {"name": "logreg"},
    "mlp": {"name": "mlp", "hidden": 64, "depth": 2},
    "cnn": {"name": "cnn", "width": 8, "fc_width": 32},
    "vit": {"name": "vit", "dim": 32, "depth": 1, "heads": 2, "patch_size": 7},
}
SEQUENTIAL = ["logreg", "mlp", "cnn"]
ALLOWED = (
    Normalize, Quantize8bit, nn.Flatten, BinaryLinear, BinaryConv2d, nn.BatchNorm1d,
    nn.BatchNorm2d, nn.MaxPool2d, nn.ReLU, nn.Hardtanh, nn.Dropout,
)  # fmt: skip


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)


def _prototype_batch(shape, n=32, seed=1):
    """A learnable tiny batch: 10 random prototypes plus noise, pixels in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    proto = torch.rand(10, *shape, generator=g)
    y = torch.arange(n) % 10
    x = (proto[y] + 0.15 * torch.randn(n, *shape, generator=g)).clamp(0, 1)
    return x, y


@pytest.mark.parametrize("shape", SHAPES, ids=["28x28x1", "32x32x3"])
@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("model", list(SMALL))
def test_forward_shapes(model, quant, shape):
    net = build_model(SMALL[model], quant, input_shape=shape, num_classes=7)
    x = torch.rand(5, *shape)
    for mode in (net.train, net.eval):
        mode()
        out = net(x)
        assert out.shape == (5, 7)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("model", SEQUENTIAL)
def test_exportable_structure(model, quant):
    q = quant_preset(quant)
    net = build_model(SMALL[model], quant, input_shape=(1, 28, 28), mean=0.1307, std=0.3081)
    assert isinstance(net, nn.Sequential)
    mods = list(net)
    assert all(isinstance(m, ALLOWED) for m in mods), [type(m).__name__ for m in mods]
    assert isinstance(mods[0], Normalize if q.is_float else Quantize8bit)
    layers = [i for i, m in enumerate(mods) if is_binary_layer(m)]
    # Every weight layer is followed by BatchNorm, the last one included (real scores).
    for i in layers:
        assert isinstance(mods[i + 1], nn.BatchNorm1d | nn.BatchNorm2d)
    assert layers[-1] == len(mods) - 2 and isinstance(mods[-1], nn.BatchNorm1d)
    first, rest = mods[layers[0]], [mods[i] for i in layers[1:]]
    assert first.input_quantizer is None
    for m in [first, *rest]:
        assert (m.kernel_quantizer is None) == (q.weight_quantizer is None)
        assert m.bias is None  # BatchNorm follows every layer
    for m in rest:
        assert (m.input_quantizer is not None) == q.binary_activations
    acts = [m for m in mods if isinstance(m, nn.ReLU | nn.Hardtanh)]
    if model == "logreg":
        assert len(layers) == 1 and not acts
    elif q.is_float:
        assert acts and all(isinstance(a, nn.ReLU) for a in acts)
    elif q.binary_activations:
        assert not acts  # the next layer's input quantizer binarizes
    else:
        assert acts and all(isinstance(a, nn.Hardtanh) for a in acts)


def test_cnn_block_order_and_flatten_size():
    for shape, side in (((1, 28, 28), 3), ((3, 32, 32), 4)):
        net = build_model(SMALL["cnn"], "bnn", input_shape=shape)
        names = [type(m).__name__ for m in net]
        block = ["BinaryConv2d", "BatchNorm2d", "BinaryConv2d", "BatchNorm2d", "MaxPool2d"]
        assert names[1:16] == block * 3
        assert names[16] == "Flatten"
        assert net[17].in_features == 32 * side * side  # 4 * width channels
        for conv in net[1:16]:
            if isinstance(conv, BinaryConv2d):
                assert conv.kernel_size == (3, 3) and conv.padding == (1, 1)


def test_mlp_depth_width_dropout():
    cfg = {"name": "mlp", "hidden": 48, "depth": 3, "dropout_input": 0.2, "dropout_hidden": 0.5}
    net = build_model(cfg, "bnn")
    lin = [m for m in net if isinstance(m, BinaryLinear)]
    assert [m.out_features for m in lin] == [48, 48, 48, 10]
    drops = [m.p for m in net if isinstance(m, nn.Dropout)]
    assert drops == [0.2, 0.5, 0.5, 0.5]
    assert not any(isinstance(m, nn.Dropout) for m in build_model(SMALL["mlp"], "bnn"))


@pytest.mark.parametrize("quant", ["bc_det", "bc_stoch", "bnn", "bnn_stoch", "xnor"])
@pytest.mark.parametrize("model,shape", [("logreg", (1, 28, 28)), ("mlp", (1, 28, 28)),
                                         ("cnn", (1, 28, 28)), ("cnn", (3, 32, 32))])  # fmt: skip
def test_first_layer_preactivations_are_integers(model, quant, shape):
    net = build_model(SMALL[model], quant, input_shape=shape).eval()
    first = next(m for m in net if is_binary_layer(m))
    seen = {}
    first.register_forward_hook(lambda m, i, o: seen.update(inp=i[0], out=o))
    net(torch.rand(4, *shape))
    assert torch.equal(seen["inp"], seen["inp"].round()) and seen["inp"].max() <= 255
    out = seen["out"]
    if quant == "xnor":  # exactly alpha (per channel) * integer
        alpha = first.kernel_quantizer.scale(first.weight.detach()).flatten()
        alpha = alpha.view(1, -1, *([1] * (out.dim() - 2)))
        integer = (out / alpha).round()
        assert torch.equal(integer * alpha, out)
        assert integer.abs().max() > 100
    else:
        assert torch.equal(out, out.round())
        assert out.abs().max() > 100  # really the 0..255 input, not normalized pixels


def _loss(net, x, y, draws=1):
    """Loss on the batch in train mode (BatchNorm batch statistics), averaged over ``draws``
    seeded stochastic draws (the same draws before and after training)."""
    total = 0.0
    with torch.no_grad():
        for seed in range(draws):
            torch.manual_seed(seed)
            total += F.cross_entropy(net(x), y).item()
    return total / draws


def _adam(net, lr, glorot):
    """Adam; with ``glorot`` binary kernels get BinaryConnect's per-layer LR scale."""
    scaled = [m for m in net.modules() if is_binary_layer(m) and m.kernel_quantizer is not None]
    groups = (
        [{"params": [m.weight], "lr": lr * glorot_lr_scale(m)} for m in scaled] if glorot else []
    )
    taken = {id(g["params"][0]) for g in groups}
    groups.append({"params": [p for p in net.parameters() if id(p) not in taken], "lr": lr})
    return torch.optim.Adam(groups)


# (model, stochastic) -> (Adam learning rate, steps); checked robust over several seeds.
LOSS_FALLS_RECIPE = {
    ("logreg", False): (0.02, 20),
    ("logreg", True): (0.01, 30),
    ("mlp", False): (0.02, 20),
    ("mlp", True): (0.01, 30),
    ("cnn", False): (0.03, 40),
    ("cnn", True): (0.03, 40),
    ("vit", False): (0.003, 20),
    ("vit", True): (0.01, 30),
}


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("model", list(SMALL))
def test_a_few_adam_steps_reduce_the_loss(model, quant):
    shape = (3, 32, 32) if model == "cnn" else (1, 28, 28)
    x, y = _prototype_batch(shape)
    q = quant_preset(quant)
    net = build_model(SMALL[model], q, input_shape=shape).train()
    stochastic = "stoch" in quant
    if stochastic:
        # BinaryConnect's recipe (U(-1, 1) latents, Glorot LR scale): with PyTorch's default
        # init every sampled weight is a fair coin and a deep net barely learns in 30 steps.
        init_latent_uniform(net)
    lr, steps = LOSS_FALLS_RECIPE[model, stochastic]
    opt = _adam(net, lr, glorot=stochastic)
    before = _loss(net, x, y, draws=8 if stochastic else 1)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        if q.clip_latent:
            clip_latent_weights(net)
    after = _loss(net, x, y, draws=8 if stochastic else 1)
    assert after < 0.9 * before, (before, after)
    if q.clip_latent:
        for m in net.modules():
            if is_binary_layer(m) and m.kernel_quantizer is not None:
                assert m.weight.abs().max() <= 1.0


def test_vit_binarizes_only_block_linears():
    net = build_model(SMALL["vit"], "bnn", input_shape=(1, 28, 28))
    assert isinstance(net, ViT)
    binary = {n for n, m in net.named_modules() if is_binary_layer(m)}
    assert binary == {
        "blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.0", "blocks.0.mlp.3",
    }  # fmt: skip
    for n in binary:
        m = net.get_submodule(n)
        assert isinstance(m, ScaledBinaryLinear)
        assert m.input_quantizer is not None and m.kernel_quantizer is not None
        assert m.out_scale == pytest.approx(m.in_features**-0.5)
    assert type(net.head) is nn.Linear and type(net.patch_embed) is nn.Conv2d
    xnor = build_model(SMALL["vit"], "xnor", input_shape=(1, 28, 28))
    assert xnor.blocks[0].attn.qkv.out_scale == 1.0  # alpha scales by itself
    flt = build_model(SMALL["vit"], "float", input_shape=(1, 28, 28))
    assert all(m.kernel_quantizer is None for m in flt.modules() if is_binary_layer(m))


def test_vit_binary_projection_matches_manual():
    net = build_model(SMALL["vit"], "bnn", input_shape=(1, 28, 28))
    m = net.blocks[0].attn.qkv
    x = torch.randn(2, 5, 32)
    expected = (sign(x) @ sign(m.weight.detach()).T) * m.out_scale + m.bias.detach()
    assert torch.allclose(m(x), expected, atol=1e-5)


def test_model_yaml_files_match_configs():
    files = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
    assert files == sorted(MODEL_CONFIGS)
    for name in files:
        raw = OmegaConf.load(CONF / "model" / f"{name}.yaml")
        assert raw.name == name
        assert set(raw.keys()) == set(OmegaConf.structured(MODEL_CONFIGS[name]).keys())
        assert to_model_config(raw) == MODEL_CONFIGS[name]()


def test_hydra_compose_builds_model():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(overrides=["+model=mlp", "+quant=xnor", "model.hidden=16", "model.depth=1"])
    net = build_model(cfg.model, cfg.quant)
    assert [m.out_features for m in net if isinstance(m, BinaryLinear)] == [16, 10]


def test_unknown_names_and_keys_raise():
    with pytest.raises(ValueError, match="unknown model 'resnet'; valid names: cnn, kmeans"):
        build_model({"name": "resnet"}, "float")
    with pytest.raises(ValueError, match="unknown model"):
        build_model("transformer", "float")
    with pytest.raises(ValueError, match="valid names: bc_det, bc_stoch, bnn"):
        build_model("mlp", "bnn2")
    with pytest.raises(Exception, match="widht"):
        build_model({"name": "cnn", "widht": 3}, "float")


def test_kmeans_metric_follows_quant():
    assert isinstance(build_model("kmeans", "float"), KMeans)
    assert build_model("kmeans", "float").metric == "euclidean"
    assert build_model("kmeans", "bnn").metric == "hamming"
    assert build_model({"name": "kmeans", "metric": "euclidean", "k": 3}, "bnn").k == 3
