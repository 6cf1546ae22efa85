import pytest

from xnorlab.packed import kernels, nibbles


@pytest.fixture(params=["xor", "nibble"])
def sweep(request, monkeypatch):
    """Run a test on both popcount forms of the kernels that have two: XOR + popcount (as on
    AVX-512 BITALG hosts) and AVX2 nibble tables (skipped on hosts without AVX2)."""
    if request.param == "nibble" and not nibbles.host_has("avx2"):
        pytest.skip("nibble-table sweeps need AVX2")
    monkeypatch.setattr(kernels, "nibble_sweeps", lambda: request.param == "nibble")
    return request.param
