"""Reader for the IDX format used by MNIST and Fashion-MNIST, with strict validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# IDX type codes -> big-endian numpy dtypes (see the MNIST page's file-format section).
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


class IdxFormatError(ValueError):
    """The file is not a well-formed IDX file."""


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file into an array, checking magic number, dimensions and size."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 4:
        raise IdxFormatError(f"{path}: {len(data)} bytes is too short for an IDX header")
    zero0, zero1, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise IdxFormatError(
            f"{path}: bad IDX magic number {data[:4].hex()} (expected 0000 + type code "
            f"{sorted(hex(c) for c in _IDX_DTYPES)} + number of dimensions); "
            "is this a compressed or foreign file?"
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise IdxFormatError(f"{path}: truncated header ({len(data)} of {header_size} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = header_size + int(np.prod(dims)) * dtype.itemsize
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "has trailing bytes"
        raise IdxFormatError(
            f"{path}: {kind}: header says shape {dims} ({expected} bytes), file has {len(data)}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write an array as an IDX file (used by tests and tools that build small datasets)."""
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
    dtype = np.dtype(array.dtype).newbyteorder("=")
    if dtype not in codes:
        raise ValueError(f"dtype {array.dtype} has no IDX type code")
    header = bytes([0, 0, codes[dtype], array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    body = np.ascontiguousarray(array, dtype=_IDX_DTYPES[codes[dtype]]).tobytes()
    Path(path).write_bytes(header + body)
