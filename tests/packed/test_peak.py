from xnorlab.bench.peak import peak_xor_popcount


def test_peak_runs():
    r = peak_xor_popcount(seconds=0.01, repeats=2)
    assert r["bitops_per_s"] > 1e9
    assert r["bitops_per_s"] >= r["bitops_per_s_median"] > 0
    assert r["threads"] == 1 and r["cpu"]
