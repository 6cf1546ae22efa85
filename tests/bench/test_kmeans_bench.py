"""The K-means side-by-side timing: its float twins assign exactly as the packed engine."""

import numpy as np
import torch

from xnorlab.bench.kmeans import FloatAssign, _random_kmeans, side_by_side


def test_float_twin_and_side_by_side_agree_with_the_model():
    km = _random_kmeans(7, 100, seed=2)
    u8 = np.random.default_rng(0).integers(0, 256, size=(300, 1, 10, 10), dtype=np.uint8)
    twin = FloatAssign(km)
    with torch.no_grad():
        scores = twin(torch.from_numpy(u8).float() / 255.0).numpy()
    assert np.array_equal(-scores, km.transform(u8.reshape(300, -1)))
    out = side_by_side(km, u8, repeats=2, min_seconds=0.01)  # raises if assignments differ
    for name in ("packed_fast", "torch_float32", "numpy_float32"):
        assert out[name]["images_per_s_best"] >= out[name]["images_per_s_median"] > 0
    assert out["speedup_over_numpy_float32"] > 0  # a ratio is reported, never asserted
