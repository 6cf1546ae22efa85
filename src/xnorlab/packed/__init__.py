"""xnorlab.packed: bit packing, XNOR-popcount kernels, BN-to-threshold folding, the ``.xnor``
format and the packed inference engine (see ``docs/packed_format.md``).

The torch exporter is imported lazily (``export_model``/``export_to_file``) so that running a
packed model needs neither torch nor a compiled numba kernel unless ``backend="numba"``.
"""

from __future__ import annotations

from typing import Any

from .bits import n_words, pack_bits, pack_signs, unpack_bits, unpack_signs
from .engine import BACKENDS, PackedEngine, get_backend
from .format import FORMAT_VERSION, PackedFormatError, load_packed, read_header, save_packed

__all__ = [
    "BACKENDS",
    "FORMAT_VERSION",
    "ExportError",
    "PackedEngine",
    "PackedFormatError",
    "export_model",
    "export_to_file",
    "get_backend",
    "load_packed",
    "n_words",
    "pack_bits",
    "pack_signs",
    "read_header",
    "save_packed",
    "unpack_bits",
    "unpack_signs",
]

_LAZY = {"ExportError", "export_model", "export_to_file"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import export

        return getattr(export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
