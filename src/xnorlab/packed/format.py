"""The ``.xnor`` file format: a bit-packed model in one file (spec: ``docs/packed_format.md``).

Layout (all integers little-endian)::

    offset 0   magic         8 bytes  b"XNORPAK\\x00"
    offset 8   version       uint32   FORMAT_VERSION (1)
    offset 12  header_len    uint32   bytes of the JSON header
    offset 16  header_sha256 32 bytes SHA-256 of the JSON header bytes
    offset 48  header        header_len bytes of UTF-8 JSON
               zero padding up to the payload offset (a multiple of 64)
    payload    arrays, each at a 64-byte aligned offset from the payload start, little-endian

The JSON header holds ``input`` (shape, dtype), ``layers`` (type, params, and per array
``offset`` (from the payload start), ``shape``, ``dtype``, ``nbytes``), ``payload`` (``offset``
from the file start, ``nbytes``, ``sha256``) and free-form ``metadata`` (config, versions, ...).
Readers reject a wrong magic, an unknown version, a bad header checksum, a truncated or padded
file, array entries outside the payload and a payload checksum mismatch with
:class:`PackedFormatError`. Writes are atomic (temporary file + ``os.replace``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_writer
from .layer_types import LAYER_TYPES
from .layers import Layer, infer_shapes

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "PackedFormatError",
    "PackedModel",
    "load_packed",
    "read_header",
    "save_packed",
]

MAGIC = b"XNORPAK\x00"
FORMAT_VERSION = 1
ALIGN = 64
_PREAMBLE = struct.Struct("<8sII32s")  # magic, version, header_len, header_sha256
_DTYPES = {"<u8": np.uint64, "<i4": np.int32, "|b1": np.bool_, "<f4": np.float32, "|u1": np.uint8}
_MAX_HEADER = 64 << 20


class PackedFormatError(ValueError):
    """A packed model file is malformed (magic, version, checksum, truncation, structure)."""


@dataclass
class PackedModel:
    """What a ``.xnor`` file holds."""

    layers: list[Layer]
    input_shape: tuple[int, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    header: dict[str, Any] = field(default_factory=dict)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _dtype_str(a: np.ndarray) -> str:
    for s, t in _DTYPES.items():
        if a.dtype == t:
            return s
    raise TypeError(f"unsupported array dtype {a.dtype}")


def _encode(
    layers: list[Layer], input_shape: tuple[int, ...], metadata: dict[str, Any]
) -> tuple[bytes, bytes]:
    """(header bytes, payload bytes)."""
    payload = bytearray()
    layer_specs = []
    for layer in layers:
        arrays = {}
        for name, arr in layer.arrays().items():
            a = np.ascontiguousarray(arr)
            dt = _dtype_str(a)
            data = a.astype(np.dtype(dt), copy=False).tobytes()
            off = _align(len(payload))
            payload.extend(b"\x00" * (off - len(payload)))
            payload.extend(data)
            arrays[name] = {"offset": off, "shape": list(a.shape), "dtype": dt, "nbytes": len(data)}
        layer_specs.append({"type": layer.type_name, "params": layer.params(), "arrays": arrays})
    payload.extend(b"\x00" * (_align(len(payload)) - len(payload)))
    header = {
        "format": "xnorlab-packed",
        "version": FORMAT_VERSION,
        "bit_order": "lsb-first uint64 words, bit 1 = +1, bit 0 = -1, padding bits 0",
        "input": {"shape": [int(d) for d in input_shape], "dtype": "uint8"},
        "layers": layer_specs,
        "metadata": metadata,
        "payload": {"offset": 0, "nbytes": len(payload), "sha256": _sha256(payload)},
    }
    # The payload offset depends on the header length, which depends on the offset's digits:
    # iterate until stable (twice at most in practice).
    for _ in range(4):
        hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
        off = _align(_PREAMBLE.size + len(hb))
        if header["payload"]["offset"] == off:
            break
        header["payload"]["offset"] = off
    return hb, bytes(payload)


def _sha256(b: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(b).hexdigest()


def save_packed(
    path: str | os.PathLike[str],
    layers: list[Layer],
    input_shape: tuple[int, ...],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a packed model atomically (temporary file in the same directory + ``os.replace``)."""
    path = Path(path)
    hb, payload = _encode(list(layers), tuple(input_shape), dict(metadata or {}))
    pre = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(hb), hashlib.sha256(hb).digest())
    pad = b"\x00" * (_align(len(pre) + len(hb)) - len(pre) - len(hb))
    with atomic_writer(path) as f:
        f.write(pre)
        f.write(hb)
        f.write(pad)
        f.write(payload)
    return path


def _parse_preamble(buf: bytes | bytearray, where: str) -> tuple[dict[str, Any], int]:
    if len(buf) < _PREAMBLE.size:
        if not MAGIC.startswith(bytes(buf[: len(MAGIC)])):
            raise PackedFormatError(f"{where}: not a packed xnorlab model (bad magic)")
        raise PackedFormatError(f"{where}: truncated file ({len(buf)} bytes, no full preamble)")
    magic, version, hlen, hsha = _PREAMBLE.unpack_from(buf, 0)
    if magic != MAGIC:
        raise PackedFormatError(
            f"{where}: not a packed xnorlab model (magic {magic!r}, expected {MAGIC!r})"
        )
    if version != FORMAT_VERSION:
        raise PackedFormatError(
            f"{where}: unsupported format version {version} (this reader supports {FORMAT_VERSION})"
        )
    if hlen > _MAX_HEADER:
        raise PackedFormatError(f"{where}: header length {hlen} is implausible (corrupt file)")
    end = _PREAMBLE.size + hlen
    if len(buf) < end:
        raise PackedFormatError(f"{where}: truncated file (header needs {end} bytes)")
    hb = bytes(buf[_PREAMBLE.size : end])
    if hashlib.sha256(hb).digest() != hsha:
        raise PackedFormatError(f"{where}: header checksum mismatch (corrupt file)")
    try:
        header = json.loads(hb.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # bad UTF-8, bad JSON, too deep, huge ints
        raise PackedFormatError(f"{where}: header is not valid JSON: {e}") from None
    if not isinstance(header, dict) or header.get("version") != FORMAT_VERSION:
        raise PackedFormatError(f"{where}: header version does not match the preamble")
    return header, end


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON header of a packed file (checks magic, version and header checksum only)."""
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(_PREAMBLE.size)
        if len(head) == _PREAMBLE.size:
            _, _, hlen, _ = _PREAMBLE.unpack(head)
            head += f.read(min(hlen, _MAX_HEADER + 1))
    return _parse_preamble(head, str(p))[0]


def _get(d: Any, key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(d, dict) or key not in d or not isinstance(d[key], typ):
        raise PackedFormatError(f"{where}: header field {key!r} missing or of the wrong type")
    return d[key]


#: The dtype each named array must have (anything else is an invalid file).
ARRAY_DTYPES = {
    "weight": "<u8", "thresh": "<i4", "flip": "|b1", "scale": "<f4", "shift": "<f4",
    "labels": "<i4",
}


def load_packed(path: str | os.PathLike[str]) -> PackedModel:
    """Read and verify a packed model file (every rule of ``docs/packed_format.md``)."""
    p = Path(path)
    where = str(p)
    buf = p.read_bytes()
    header, hend = _parse_preamble(buf, where)
    if header.get("format") != "xnorlab-packed":
        raise PackedFormatError(f"{where}: header 'format' is not 'xnorlab-packed'")
    pay = _get(header, "payload", dict, where)
    poff = _get(pay, "offset", int, where)
    pn = _get(pay, "nbytes", int, where)
    if poff != _align(hend) or pn < 0 or pn % ALIGN:
        raise PackedFormatError(f"{where}: bad payload offset/size in header")
    if len(buf) < poff + pn:
        raise PackedFormatError(
            f"{where}: truncated file ({len(buf)} bytes, payload needs {poff + pn})"
        )
    if len(buf) > poff + pn:
        raise PackedFormatError(f"{where}: {len(buf) - poff - pn} unexpected trailing bytes")
    if any(buf[hend:poff]):
        raise PackedFormatError(f"{where}: non-zero bytes in the header padding")
    payload = memoryview(buf)[poff : poff + pn]
    if _sha256(payload) != _get(pay, "sha256", str, where):
        raise PackedFormatError(f"{where}: payload checksum mismatch (corrupt file)")
    inp = _get(header, "input", dict, where)
    shape = _get(inp, "shape", list, where)
    if inp.get("dtype") != "uint8" or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
    ):
        raise PackedFormatError(f"{where}: bad input spec {inp!r}")
    used = bytearray(pn)  # which payload bytes some array covers
    layers: list[Layer] = []
    for i, spec in enumerate(_get(header, "layers", list, where)):
        lw = f"{where}: layer {i}"
        typ = _get(spec, "type", str, lw)
        if typ not in LAYER_TYPES:
            raise PackedFormatError(f"{lw}: unknown layer type {typ!r}")
        params = _get(spec, "params", dict, lw)
        arrays = {
            name: _read_array(payload, used, name, a, f"{lw} array {name!r}")
            for name, a in _get(spec, "arrays", dict, lw).items()
        }
        try:
            layers.append(LAYER_TYPES[typ].from_spec(params, arrays))
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise PackedFormatError(f"{lw} ({typ}): invalid parameters: {e!r}") from None
    if np.frombuffer(payload, np.uint8)[np.frombuffer(used, np.uint8) == 0].any():
        raise PackedFormatError(f"{where}: non-zero bytes in the payload's alignment padding")
    try:
        infer_shapes(layers, tuple(shape))
    except ValueError as e:
        raise PackedFormatError(f"{where}: inconsistent model: {e}") from None
    metadata = header.get("metadata", {})
    if not isinstance(metadata, dict):
        raise PackedFormatError(f"{where}: header field 'metadata' must be an object")
    return PackedModel(layers, tuple(shape), metadata, header)


def _read_array(
    payload: memoryview, used: bytearray, name: str, a: Any, aw: str
) -> np.ndarray:
    """One array of the payload, checked: its dtype for its name, size, alignment, no overlap
    with another array, flips 0/1, finite floats."""
    if name not in ARRAY_DTYPES:
        raise PackedFormatError(f"{aw}: unknown array name")
    dt = _get(a, "dtype", str, aw)
    if dt != ARRAY_DTYPES[name]:
        raise PackedFormatError(f"{aw}: dtype {dt!r}, expected {ARRAY_DTYPES[name]!r}")
    ashape = _get(a, "shape", list, aw)
    off = _get(a, "offset", int, aw)
    nb = _get(a, "nbytes", int, aw)
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in ashape):
        raise PackedFormatError(f"{aw}: bad shape {ashape!r}")
    count = math.prod(ashape)
    if nb != count * np.dtype(dt).itemsize or off < 0 or off % ALIGN or off + nb > len(payload):
        raise PackedFormatError(f"{aw}: offset/size inconsistent with the payload")
    if any(used[off : off + nb]):
        raise PackedFormatError(f"{aw}: overlaps another array")
    used[off : off + nb] = b"\x01" * nb
    raw = np.frombuffer(payload, dtype=np.uint8, count=nb, offset=off)
    if dt == "|b1" and np.any(raw > 1):
        raise PackedFormatError(f"{aw}: flip bytes must be 0 or 1")
    arr = raw.view(np.dtype(dt)).astype(_DTYPES[dt]).reshape(ashape)  # native-endian copy
    if dt == "<f4" and not np.isfinite(arr).all():
        raise PackedFormatError(f"{aw}: non-finite values")
    return arr
