"""KMeans: recovers separated clusters (both metrics), label mapping, hardest examples."""

import numpy as np
import pytest

from xnorlab.models import KMeans


def _blobs(n_per=60, k=4, d=30, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(0.1, 0.9, size=(k, d)).astype(np.float32)
    y = np.repeat(np.arange(k), n_per)
    x = centers[y] + rng.normal(0, spread, size=(len(y), d)).astype(np.float32)
    perm = rng.permutation(len(y))
    return x[perm], y[perm], centers


def _binary_blobs(n_per=60, k=5, d=128, flip=0.08, seed=0):
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 2, size=(k, d))
    y = np.repeat(np.arange(k), n_per)
    bits = protos[y] ^ (rng.random((len(y), d)) < flip)
    # Grey-level pixels on either side of the 0.5 threshold.
    x = np.where(bits == 1, rng.uniform(0.5, 1.0, bits.shape), rng.uniform(0, 0.49, bits.shape))
    return x.reshape(-1, 1, 8, 16).astype(np.float32), y, protos


def test_euclidean_recovers_clusters():
    x, y, centers = _blobs()
    km = KMeans(k=4, metric="euclidean", seed=0).fit(x)
    mapping = km.map_clusters_to_labels(y)
    assert sorted(mapping.tolist()) == [0, 1, 2, 3]  # one cluster per class
    assert km.score(x, y) == 1.0
    got = km.cluster_centers_[np.argsort(mapping)]
    assert np.allclose(got, centers, atol=0.03)
    assert km.inertia_ == pytest.approx(float(km.transform(x).min(axis=1).sum()), rel=1e-4)


def test_hamming_recovers_prototypes_as_majority_bits():
    x, y, protos = _binary_blobs()
    km = KMeans(k=5, metric="hamming", seed=3).fit(x)
    mapping = km.map_clusters_to_labels(y)
    assert sorted(mapping.tolist()) == [0, 1, 2, 3, 4]
    assert km.score(x, y) == 1.0
    centers = km.cluster_centers_
    assert centers.dtype == np.uint8 and set(np.unique(centers)) <= {0, 1}
    assert np.array_equal(centers[np.argsort(mapping)], protos)
    # Distances are integer bit counts.
    d = km.transform(x)
    assert np.array_equal(d, np.round(d)) and d.max() <= 128


def test_hamming_uses_threshold_and_uint8_input():
    x = np.array([[0.49, 0.5, 1.0, 0.0]], dtype=np.float32)
    km = KMeans(k=1, metric="hamming").fit(np.repeat(x, 3, axis=0))
    assert km.cluster_centers_.tolist() == [[0, 1, 1, 0]]
    km_u8 = KMeans(k=1, metric="hamming").fit(np.array([[124, 128, 255, 0]] * 2, dtype=np.uint8))
    assert km_u8.cluster_centers_.tolist() == [[0, 1, 1, 0]]


def test_seeded_and_predict_new_points():
    x, y, centers = _blobs(seed=1)
    a = KMeans(k=4, seed=7, n_init=2).fit(x)
    b = KMeans(k=4, seed=7, n_init=2).fit(x)
    assert np.array_equal(a.cluster_centers_, b.cluster_centers_)
    a.map_clusters_to_labels(y)
    assert np.array_equal(a.predict_labels(centers), np.arange(4))


def test_hardest_examples_are_misclassified_and_farthest_first():
    x, y, centers = _blobs(n_per=50, k=3, d=10, spread=0.02, seed=2)
    km = KMeans(k=3, seed=0).fit(x)
    km.map_clusters_to_labels(y)
    # Test set: clean points plus points of class 0 labelled 1, at growing distances.
    offsets = np.array([0.01, 0.08, 0.04, 0.06], dtype=np.float32)
    bad = centers[0] + offsets[:, None] * np.ones(10, dtype=np.float32)
    x_test = np.concatenate([centers, bad, centers[1:2] + 0.2])
    y_test = np.array([0, 1, 2, 1, 1, 1, 1, 1])  # last one: far but correctly labelled
    idx = km.hardest_examples(x_test, y_test, n=3)
    assert idx.tolist() == [4, 6, 5]
    assert km.hardest_examples(x_test, y_test, n=10).tolist() == [4, 6, 5, 3]


def test_errors():
    with pytest.raises(ValueError, match="euclidean, hamming"):
        KMeans(metric="cosine")
    with pytest.raises(RuntimeError, match="fit"):
        KMeans().predict(np.zeros((2, 3)))
    km = KMeans(k=2).fit(np.eye(4, dtype=np.float32))
    with pytest.raises(RuntimeError, match="map_clusters_to_labels"):
        km.hardest_examples(np.eye(4), np.zeros(4))
