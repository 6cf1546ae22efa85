"""The fused K-means kernel: the reference's Hamming distances for every shape and threshold."""

import numpy as np
import pytest

from xnorlab.packed import centroid_kernels, reference
from xnorlab.packed.bits import n_words, pack_bits


def _case(m, k, c, seed):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    w = pack_bits(rng.integers(0, 2, size=(c, k)))
    return u, w


@pytest.mark.parametrize("m,k,c", [(1, 1, 1), (1, 64, 3), (63, 100, 10), (130, 784, 10),
                                   (5, 129, 7)])
@pytest.mark.parametrize("threshold", [0, 1, 127, 128, 255, 256])
@pytest.mark.parametrize("threads", [1, 2])
def test_threshold_hamming_matches_reference(m, k, c, threshold, threads):
    u, w = _case(m, k, c, seed=m * 1000 + k)
    got = centroid_kernels.threshold_hamming(u, threshold, w, threads=threads)
    want = reference.threshold_hamming(u, threshold, w)
    assert got.dtype == np.int32 and got.shape == (m, c)
    assert np.array_equal(got, want)
    # and it is the Hamming distance itself
    naive = ((u[:, None, :] >= threshold) != (np.unpackbits(
        w.view(np.uint8), axis=1, bitorder="little")[None, :, :k] == 1)).sum(-1)
    assert np.array_equal(got, naive)


def test_threshold_hamming_rejects_bad_input():
    u, w = _case(4, 100, 3, seed=0)
    with pytest.raises(ValueError, match="do not match"):
        centroid_kernels.threshold_hamming(u[:, :64], 128, w)
    with pytest.raises(ValueError, match="0..256"):
        centroid_kernels.threshold_hamming(u, 257, w)
    assert n_words(100) == w.shape[1]
