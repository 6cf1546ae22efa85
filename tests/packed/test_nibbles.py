"""Nibble tables: T_lo[x & 15] + T_hi[x >> 4] = popcount(x ^ w) for every byte x."""

import numpy as np
import pytest

from xnorlab.packed import nibbles


@pytest.mark.parametrize("taps,out", [(1, 1), (3, 2), (7, 5), (18, 16)])
def test_nibble_tables_count_the_bits_of_x_xor_w(taps, out):
    rng = np.random.default_rng(taps * out)
    bw = rng.integers(0, 256, size=(taps, out), dtype=np.uint8)
    t = nibbles.nibble_tables(bw)
    ta, co = nibbles.NIBBLE_TAPS, nibbles.NIBBLE_OUTPUTS
    passes, groups = -(-taps // ta), -(-out // co)
    assert t.shape == (groups, passes, co * ta * 2 * 16) and t.dtype == np.uint8
    # (group, pass, output, tap, lo / hi, 16) -> (tap, output, lo / hi, 16)
    per_tap = t.reshape(groups, passes, co, ta, 2, 16).transpose(1, 3, 0, 2, 4, 5)
    per_tap = per_tap.reshape(passes * ta, groups * co, 2, 16)
    x = np.arange(256, dtype=np.uint8)
    for i in range(taps):
        for j in range(out):
            got = per_tap[i, j, 0][x & 15] + per_tap[i, j, 1][x >> 4]
            assert np.array_equal(got, np.bitwise_count(x ^ bw[i, j]))
    assert not per_tap[taps:].any() and not per_tap[:, out:].any()  # padding adds nothing


def test_nibble_sweeps_follow_the_cpu(monkeypatch):
    monkeypatch.setattr(nibbles, "_host_features", lambda: {"avx2": True})
    assert nibbles.nibble_sweeps()
    monkeypatch.setattr(nibbles, "_host_features", lambda: {"avx2": True, "avx512bitalg": True})
    assert not nibbles.nibble_sweeps()
    monkeypatch.setattr(nibbles, "_host_features", lambda: {"sse4.2": True})
    assert not nibbles.nibble_sweeps()
