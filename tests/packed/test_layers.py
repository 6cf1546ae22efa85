import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xnorlab.packed.bits import pack_signs, unpack_signs
from xnorlab.packed.engine import PackedEngine, _fuse_pools, get_backend
from xnorlab.packed.layers import Act, Conv2d, Dense, Flatten, MaxPool2d, or_pool


def _pm1(rng, shape):
    return rng.choice(np.array([-1, 1], dtype=np.int8), size=shape)


def _conv_layer(w_pm1, **kw):
    cout, cin, kh, kw_ = w_pm1.shape
    weight = pack_signs(w_pm1.transpose(0, 2, 3, 1)).reshape(cout, -1)
    zeros = np.zeros(cout)
    return Conv2d(
        weight=weight,
        in_channels=cin,
        kernel=(kh, kw_),
        thresh=zeros,
        flip=zeros.astype(bool),
        **kw,
    )


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize(
    "cin,cout,hw,k,stride,pad",
    [(3, 5, 7, 3, 1, 1), (70, 9, 6, 3, 1, 1), (64, 4, 5, 3, 2, 1), (2, 3, 8, 2, 1, 0)],
)
def test_binary_conv_equals_torch_conv_with_plus_one_padding(
    backend, cin, cout, hw, k, stride, pad
):
    rng = np.random.default_rng(cin * cout)
    x = _pm1(rng, (2, cin, hw, hw + 1))
    w = _pm1(rng, (cout, cin, k, k))
    layer = _conv_layer(w, stride=stride, padding=(pad,) * 4)
    xb = pack_signs(x.transpose(0, 2, 3, 1))  # NHWC packed
    act, y = layer.forward(Act("bits_image", xb, channels=cin), get_backend(backend), True)
    xt = F.pad(torch.from_numpy(x).double(), (pad,) * 4, value=1.0)
    want = F.conv2d(xt, torch.from_numpy(w).double(), stride=stride).numpy()
    assert y.shape == want.shape and np.array_equal(y, want)
    # output bits (threshold 0) match, fused path too
    bits = unpack_signs(act.data, cout).transpose(0, 3, 1, 2)
    assert np.array_equal(bits, np.where(want >= 0, 1, -1))
    act2, _ = layer.forward(Act("bits_image", xb, channels=cin), get_backend(backend), False)
    assert np.array_equal(act2.data, act.data)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_uint8_conv_equals_torch_conv_with_zero_padding(backend):
    rng = np.random.default_rng(0)
    u = rng.integers(0, 256, size=(3, 3, 9, 8), dtype=np.uint8)
    u[0, :, 0, :] = 255
    w = _pm1(rng, (6, 3, 3, 3))
    weight = pack_signs(w.transpose(0, 2, 3, 1).reshape(6, -1))
    layer = Conv2d(
        weight=weight,
        in_channels=3,
        kernel=3,
        padding=(1, 1, 1, 1),
        uint8_input=True,
        thresh=np.zeros(6),
        flip=np.zeros(6, bool),
    )
    _, y = layer.forward(Act("u8", u), get_backend(backend), True)
    want = F.conv2d(torch.from_numpy(u).double(), torch.from_numpy(w).double(), padding=1)
    assert np.array_equal(y, want.numpy())


@pytest.mark.parametrize("hw,k,s,p", [((8, 8), 2, 2, 0), ((7, 9), 2, 2, 0), ((7, 7), 3, 2, 1)])
def test_or_pool_equals_max_pool(hw, k, s, p):
    rng = np.random.default_rng(1)
    x = _pm1(rng, (2, 70, *hw))
    got = or_pool(pack_signs(x.transpose(0, 2, 3, 1)), (k, k), (s, s), (p, p))
    want = F.max_pool2d(torch.from_numpy(x).float(), k, s, p).numpy()
    assert np.array_equal(unpack_signs(got, 70).transpose(0, 3, 1, 2), want)
    layer = MaxPool2d(k, s, p)
    out, _ = layer.forward(Act("bits_image", pack_signs(x.transpose(0, 2, 3, 1)), 70), None, False)
    assert np.array_equal(out.data, got)


def test_dense_after_flatten_of_image_and_flip():
    rng = np.random.default_rng(2)
    x = _pm1(rng, (4, 70, 3, 2))  # NCHW +-1
    w = _pm1(rng, (5, 70 * 3 * 2))  # torch order (C, H, W)
    wl = pack_signs(w.reshape(5, 70, 3, 2).transpose(0, 2, 3, 1)).reshape(5, -1)
    thresh = np.array([0, 0, 3, -3, 0])
    flip = np.array([False, True, False, True, False])
    dense = Dense(weight=wl, in_features=420, thresh=thresh, flip=flip)
    flat, _ = Flatten().forward(
        Act("bits_image", pack_signs(x.transpose(0, 2, 3, 1)), channels=70), None, False
    )
    for backend in ("numba", "numpy"):
        ops = get_backend(backend)
        act, y = dense.forward(flat, ops, True)
        want = x.reshape(4, -1).astype(np.int64) @ w.T.astype(np.int64)
        assert np.array_equal(y, want)
        bits = np.where(flip, want <= thresh, want >= thresh)
        assert np.array_equal(unpack_signs(act.data, 5), np.where(bits, 1, -1))
        act2, _ = dense.forward(flat, ops, False)
        assert np.array_equal(act2.data, act.data)


def test_layer_validation():
    with pytest.raises(ValueError, match="output stage"):
        Dense(weight=np.zeros((2, 1), np.uint64), in_features=3)
    with pytest.raises(ValueError, match="weight"):
        Conv2d(
            weight=np.zeros((2, 5), np.uint64),
            in_channels=3,
            kernel=3,
            thresh=np.zeros(2),
            flip=np.zeros(2, bool),
        )


def _small_cnn(rng):
    """uint8 conv(3->8) -> pool 2 -> conv(8->70) -> pool 3/2 pad 1 -> flatten -> dense."""

    def stage(n, bound):
        return {"thresh": rng.integers(-bound, bound, n), "flip": rng.random(n) < 0.5}

    first = Conv2d(weight=pack_signs(_pm1(rng, (8, 27))), in_channels=3, kernel=3,
                   uint8_input=True, **stage(8, 2000))
    w2 = pack_signs(_pm1(rng, (70, 3, 3, 8))).reshape(70, -1)
    second = Conv2d(weight=w2, in_channels=8, kernel=3, **stage(70, 20))
    w3 = pack_signs(_pm1(rng, (4, 2, 3, 70))).reshape(4, -1)  # after 4x5 -> 2x3 pooling
    last = Dense(weight=w3, in_features=420, scale=np.ones(4), shift=np.zeros(4))
    return [first, MaxPool2d(2, 2), second, MaxPool2d(3, 2, 1), Flatten(), last]


def test_engine_fuses_non_overlapping_pools_only():
    rng = np.random.default_rng(5)
    layers = _small_cnn(rng)
    steps = _fuse_pools(layers)
    assert [(type(m).__name__, kw) for m, kw in steps] == [
        ("Conv2d", {"pool": (2, 2)}), ("Conv2d", {}), ("MaxPool2d", {}), ("Flatten", {}),
        ("Dense", {}),
    ]
    u = rng.integers(0, 256, size=(5, 3, 9, 10), dtype=np.uint8)
    for backend in ("numba", "numpy"):
        eng = PackedEngine(layers, (3, 9, 10), backend=backend)
        a = Act("u8", u)
        for layer in layers:  # unfused, layer by layer
            a, _ = layer.forward(a, eng.ops, False)
        assert np.array_equal(eng.scores(u), a.data)
        ints = eng.forward_int(u)
        assert [y.shape for y in ints] == [(5, 8, 9, 10), (5, 70, 4, 5), (5, 4)]
        assert np.array_equal(ints[-1].astype(np.float32), eng.scores(u))
