"""numba graph ops against the NumPy reference: exact for bits, float rounding for LayerNorm
and attention."""

import numpy as np

from xnorlab.packed import graph_kernels, graph_reference
from xnorlab.packed.layers import THRESH_MAX, THRESH_MIN


def test_sign_pack_and_band_pack_are_exact():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 130)).astype(np.float32)
    x[0, :5] = [0.0, -0.0, 1e-45, -1e-45, -1.0]  # sign(0) = sign(-0.0) = +1
    assert np.array_equal(graph_kernels.sign_pack(x, threads=1), graph_reference.sign_pack(x))
    assert graph_kernels.sign_pack(x)[0, 0] & 0b11111 == 0b00111
    y = rng.integers(-70, 71, size=(29, 70)).astype(np.int32)
    t = rng.integers(-80, 80, size=70).astype(np.int32)
    low = rng.integers(-80, 0, size=70).astype(np.int32)
    t[:3], low[:3] = [THRESH_MAX, THRESH_MIN, THRESH_MAX], [THRESH_MIN, THRESH_MIN, 5]
    got = graph_kernels.band_pack(y, t, low, threads=1)
    assert np.array_equal(got, graph_reference.band_pack(y, t, low))
    assert np.all(got[:, 1] >> np.uint64(6) == 0)  # bits above the 6 used in the last word: 0
    assert np.all(got[:, 0] & 1 == 0) and np.all(got[:, 0] & 2 == 2)  # never / always


def test_layer_norm_agrees_up_to_rounding():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(53, 40)) * 3 + 1).astype(np.float32)
    w, b = rng.normal(size=(2, 40)).astype(np.float32)
    got = graph_kernels.layer_norm(x, w, b, 1e-5, threads=1)
    want = graph_reference.layer_norm(x, w, b, 1e-5)
    assert got.dtype == np.float32 and np.allclose(got, want, rtol=1e-5, atol=1e-5)
    xd = x.astype(np.float64)
    exact = (xd - xd.mean(1, keepdims=True)) / np.sqrt(xd.var(1, keepdims=True) + 1e-5) * w + b
    assert np.abs(got - exact).max() < 1e-4


def test_fused_xnor_affine_and_band_are_exact():
    """Integer y, then float32(y) * scale + bias with two roundings, on both backends."""
    from xnorlab.packed import reference
    from xnorlab.packed.bits import pack_signs

    rng = np.random.default_rng(2)
    for k in (5, 64, 150):
        a = pack_signs(rng.normal(size=(33, k)))
        w = pack_signs(rng.normal(size=(70, k)))
        scale, bias = rng.normal(size=(2, 70)).astype(np.float32)
        want = reference.xnor_gemm(a, w, k).astype(np.float32) * scale + bias
        wt = np.ascontiguousarray(w.T)
        assert np.array_equal(graph_kernels.xnor_affine(a, wt, k, scale, bias, threads=1), want)
        assert np.array_equal(graph_reference.xnor_affine(a, wt, k, scale, bias), want)
        t = rng.integers(-k, k + 1, 70).astype(np.int32)
        low = rng.integers(-k - 1, 0, 70).astype(np.int32)
        bits = graph_reference.band_pack(reference.xnor_gemm(a, w, k), t, low)
        assert np.array_equal(graph_kernels.xnor_band(a, wt, k, t, low, threads=1), bits)
        assert np.array_equal(graph_reference.xnor_band(a, wt, k, t, low), bits)


def test_layer_norm_is_torchs_bit_for_bit():
    """The numba backend's LayerNorm is torch's nn.LayerNorm (the model's), odd widths, 1 row."""
    import torch

    rng = np.random.default_rng(3)
    for m, d in [(1, 64), (33, 13), (70, 67), (9, 130)]:
        x = (rng.normal(size=(m, d)) * 3 + rng.normal()).astype(np.float32)
        ln = torch.nn.LayerNorm(d)
        with torch.no_grad():
            ln.weight.copy_(torch.from_numpy(rng.normal(size=d).astype(np.float32)))
            ln.bias.copy_(torch.from_numpy(rng.normal(size=d).astype(np.float32)))
            want = ln(torch.from_numpy(x)).numpy()
        w, b = ln.weight.detach().numpy(), ln.bias.detach().numpy()
        assert np.array_equal(graph_kernels.layer_norm(x, w, b, 1e-5, threads=1), want)


def test_attention_agrees_with_the_reference_up_to_rounding():
    """torch's fused attention vs the reference formula: odd token counts, head widths, N=1."""
    rng = np.random.default_rng(4)
    for n, t, heads, hd in [(1, 16, 4, 16), (3, 9, 2, 20), (2, 5, 3, 7), (1, 1, 1, 3)]:
        x = (rng.normal(size=(n, t, 3 * heads * hd)) * 2).astype(np.float32)
        got = graph_kernels.attention(x, heads, threads=1)
        want = graph_reference.attention(x, heads)
        assert got.dtype == np.float32 and got.shape == (n, t, heads * hd)
        assert np.allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.array_equal(graph_kernels.attention(x[:, :1], 1), x[:, :1, 6:])  # 1 token: v


def test_residual_is_exact():
    """x + gamma * y, two float32 roundings: the same bits on both backends, odd widths."""
    rng = np.random.default_rng(5)
    for m, d in [(1, 64), (33, 13), (7, 130)]:
        x, y = rng.normal(size=(2, m, d)).astype(np.float32)
        g = rng.normal(size=d).astype(np.float32)
        want = x + g * y
        assert np.array_equal(graph_kernels.residual(x, y, g, threads=1), want)
        assert np.array_equal(graph_reference.residual(x, y, g), want)


def test_mean_tokens_is_numpys_mean():
    """Token sums in token order, then / T: NumPy's float32 mean over axis 1, bit for bit."""
    rng = np.random.default_rng(6)
    for n, t, d in [(1, 16, 64), (5, 7, 13), (3, 1, 9), (2, 33, 130)]:
        x = (rng.normal(size=(n, t, d)) * 10).astype(np.float32)
        want = x.mean(axis=1, dtype=np.float32)
        assert np.array_equal(graph_kernels.mean_tokens(x, threads=1), want)
        assert np.array_equal(graph_reference.mean_tokens(x), want)
