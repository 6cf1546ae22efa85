"""Both kernel backends provide the whole :class:`Backend` interface, with its signatures."""

import inspect

import pytest

from xnorlab.packed import centroid_kernels, graph_kernels, kernels, reference
from xnorlab.packed.backend import OPS, Backend
from xnorlab.packed.engine import get_backend


def _params(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p not in ("self", "threads",
                                                                     "use_torch", "tables")]


def test_ops_cover_every_kernel_the_layers_call():
    assert {"xnor_gemm", "xnor_gemm_threshold", "uint8_gemm", "uint8_gemm_threshold",
            "threshold_pack", "binary_conv2d", "uint8_conv2d"} <= set(OPS)


# the numba backend keeps the graph (format 2) and K-means operations in modules of their own
@pytest.mark.parametrize("modules", [(kernels, graph_kernels, centroid_kernels), (reference,)])
@pytest.mark.parametrize("op", OPS)
def test_backend_module_matches_the_protocol(modules, op):
    fn = next(getattr(m, op) for m in modules if hasattr(m, op))
    assert _params(fn) == _params(getattr(Backend, op)), (fn.__module__, op)
    assert "threads" in inspect.signature(fn).parameters


@pytest.mark.parametrize("name", ["numba", "numpy"])
def test_get_backend_binds_every_op(name):
    be = get_backend(name, threads=1)
    assert be.name == name and all(callable(getattr(be, op)) for op in OPS)
    with pytest.raises(ValueError, match="unknown backend"):
        get_backend("cuda")
