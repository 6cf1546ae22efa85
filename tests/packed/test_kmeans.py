"""Binarized-pixel K-means in the packed engine: identical assignments, ties included."""

import numpy as np
import pytest

from xnorlab.models.kmeans import KMeans
from xnorlab.packed.centroids import NearestCentroid
from xnorlab.packed.engine import PackedEngine
from xnorlab.packed.export import ExportError, export_kmeans

SHAPE = (1, 10, 10)  # 100 pixels: the last word has padding bits


def _data(n, seed):
    """Noisy copies of 6 prototype images, uint8, and their prototype index."""
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, size=(6, *SHAPE))
    y = rng.integers(0, 6, n)
    noise = rng.integers(-90, 90, size=(n, *SHAPE))
    return np.clip(protos[y] + noise, 0, 255).astype(np.uint8), y


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_kmeans_assignments_identical(backend, tmp_path):
    x, y = _data(600, seed=0)
    km = KMeans(k=8, metric="hamming", seed=3, max_iter=20).fit(x)
    km.map_clusters_to_labels(y, num_classes=6)
    eng = export_kmeans(km, SHAPE, backend=backend)
    test, _ = _data(2000, seed=1)
    flat = test.reshape(len(test), -1)
    assign = np.argmax(eng.scores(test), axis=1)
    assert np.array_equal(assign, km.predict(flat))
    assert np.array_equal(eng.predict(test), km.predict_labels(flat))
    (dist,) = eng.forward_int(test)
    assert np.array_equal(dist, km.transform(flat).astype(np.int64))
    # the file round trip keeps all of it
    loaded = PackedEngine.load(eng.save(tmp_path / "km.xnor"), backend=backend)
    assert np.array_equal(loaded.predict(test), km.predict_labels(flat))


def test_ties_go_to_the_lowest_centroid():
    rng = np.random.default_rng(2)
    c = np.where(rng.random((4, 100)) < 0.5, 1.0, -1.0).astype(np.float32)
    c[3] = c[1]  # an exact duplicate: every image ties between centroids 1 and 3
    c[2, :50] = c[0, :50]
    c[2, 50:] = -c[0, 50:]  # 0 and 2 tie on images agreeing with c0 on half the pixels
    km = KMeans.from_state({"k": 4, "metric": "hamming", "threshold": 0.5, "centers": c,
                            "cluster_to_label": np.array([0, 1, 2, 3])})
    x, _ = _data(3000, seed=5)
    flat = x.reshape(len(x), -1)
    d = km.transform(flat)
    ties = (np.sort(d, axis=1)[:, 0] == np.sort(d, axis=1)[:, 1]).sum()
    assert ties > 100  # the case under test happens
    eng = export_kmeans(km, SHAPE)
    assert np.array_equal(eng.predict(x), km.predict(flat))
    assert not (eng.predict(x) == 3).any()


def test_pixel_threshold_is_the_models_own_test():
    for thr in (0.0, 0.3, 0.5, 128 / 255, 1.0, 1.5):
        km = KMeans.from_state({"k": 1, "metric": "hamming", "threshold": thr,
                                "centers": np.ones((1, 100), np.float32),
                                "cluster_to_label": np.array([0])})
        layer = export_kmeans(km, SHAPE).layers[-1]
        assert isinstance(layer, NearestCentroid)
        u = np.arange(256, dtype=np.uint8)[:, None]
        assert np.array_equal(u[:, 0] >= layer.pixel_threshold, km._prepare(u)[:, 0] > 0)


def test_euclidean_kmeans_not_exportable():
    x, y = _data(100, seed=0)
    km = KMeans(k=3, metric="euclidean", max_iter=3).fit(x)
    km.map_clusters_to_labels(y)
    with pytest.raises(ExportError, match="hamming"):
        export_kmeans(km, SHAPE)
