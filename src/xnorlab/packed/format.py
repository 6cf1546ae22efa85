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
from .nodes import MAX_VALUES, NODE_TYPES, Node, TShape

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "GRAPH_VERSION",
    "PackedFormatError",
    "PackedGraph",
    "PackedModel",
    "graph_shapes",
    "load_file",
    "save_graph",
    "load_packed",
    "read_header",
    "save_packed",
]

MAGIC = b"XNORPAK\x00"
FORMAT_VERSION = 1  # sequential layers
GRAPH_VERSION = 2  # a graph of named nodes (the ViT)
VERSIONS = (FORMAT_VERSION, GRAPH_VERSION)
ALIGN = 64
_PREAMBLE = struct.Struct("<8sII32s")  # magic, version, header_len, header_sha256
_DTYPES = {"<u8": np.uint64, "<i4": np.int32, "|b1": np.bool_, "<f4": np.float32, "|u1": np.uint8}
_MAX_HEADER = 64 << 20


class PackedFormatError(ValueError):
    """A packed model file is malformed (magic, version, checksum, truncation, structure)."""


@dataclass
class PackedGraph:
    """What a version-2 ``.xnor`` file holds: nodes in topological (file) order."""

    nodes: list[Node]
    input_shape: tuple[int, ...]
    output: str
    metadata: dict[str, Any] = field(default_factory=dict)
    header: dict[str, Any] = field(default_factory=dict)


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


def _pack_arrays(groups: list[dict[str, np.ndarray]]) -> tuple[list[dict[str, Any]], bytes]:
    """Array specs per group (layer or node) and the payload: arrays in order, each at the next
    multiple of 64, zero slack up to a multiple of 64."""
    payload = bytearray()
    specs = []
    for group in groups:
        arrays = {}
        for name, arr in group.items():
            a = np.ascontiguousarray(arr)
            dt = _dtype_str(a)
            data = a.astype(np.dtype(dt), copy=False).tobytes()
            off = _align(len(payload))
            payload.extend(b"\x00" * (off - len(payload)))
            payload.extend(data)
            arrays[name] = {"offset": off, "shape": list(a.shape), "dtype": dt, "nbytes": len(data)}
        specs.append(arrays)
    payload.extend(b"\x00" * (_align(len(payload)) - len(payload)))
    return specs, bytes(payload)


def _header_bytes(header: dict[str, Any]) -> bytes:
    """The header as written (sorted keys, no whitespace), ``payload.offset`` set to
    ``align64(48 + L)``: the offset depends on the header length, which depends on the
    offset's digits, so iterate until stable (twice at most in practice)."""
    for _ in range(4):
        hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
        off = _align(_PREAMBLE.size + len(hb))
        if header["payload"]["offset"] == off:
            break
        header["payload"]["offset"] = off
    return hb


def _base_header(version: int, input_shape: tuple[int, ...], metadata: dict[str, Any],
                 payload: bytes) -> dict[str, Any]:
    return {
        "format": "xnorlab-packed",
        "version": version,
        "bit_order": "lsb-first uint64 words, bit 1 = +1, bit 0 = -1, padding bits 0",
        "input": {"shape": [int(d) for d in input_shape], "dtype": "uint8"},
        "metadata": metadata,
        "payload": {"offset": 0, "nbytes": len(payload), "sha256": _sha256(payload)},
    }


def _encode(
    layers: list[Layer], input_shape: tuple[int, ...], metadata: dict[str, Any]
) -> tuple[bytes, bytes]:
    """Version 1: (header bytes, payload bytes)."""
    specs, payload = _pack_arrays([layer.arrays() for layer in layers])
    header = _base_header(FORMAT_VERSION, input_shape, metadata, payload)
    header["layers"] = [
        {"type": layer.type_name, "params": layer.params(), "arrays": arrays}
        for layer, arrays in zip(layers, specs, strict=True)
    ]
    return _header_bytes(header), payload


def _encode_graph(graph: PackedGraph) -> tuple[bytes, bytes]:
    """Version 2: (header bytes, payload bytes)."""
    specs, payload = _pack_arrays([node.arrays() for node in graph.nodes])
    header = _base_header(GRAPH_VERSION, graph.input_shape, graph.metadata, payload)
    header["nodes"] = [
        {"name": node.name, "op": node.op, "inputs": list(node.inputs), "params": node.params(),
         "arrays": arrays}
        for node, arrays in zip(graph.nodes, specs, strict=True)
    ]
    header["output"] = graph.output
    return _header_bytes(header), payload


def _sha256(b: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(b).hexdigest()


def save_packed(
    path: str | os.PathLike[str],
    layers: list[Layer],
    input_shape: tuple[int, ...],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a sequential (version 1) model atomically (temporary file + ``os.replace``)."""
    hb, payload = _encode(list(layers), tuple(input_shape), dict(metadata or {}))
    return _write(Path(path), FORMAT_VERSION, hb, payload)


def save_graph(path: str | os.PathLike[str], graph: PackedGraph) -> Path:
    """Write a graph (version 2) model atomically."""
    hb, payload = _encode_graph(graph)
    return _write(Path(path), GRAPH_VERSION, hb, payload)


def _write(path: Path, version: int, hb: bytes, payload: bytes) -> Path:
    pre = _PREAMBLE.pack(MAGIC, version, len(hb), hashlib.sha256(hb).digest())
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
    if version not in VERSIONS:
        raise PackedFormatError(
            f"{where}: unsupported format version {version} (this reader supports "
            f"{', '.join(map(str, VERSIONS))})"
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
    if not isinstance(header, dict) or header.get("version") != version or isinstance(
            header.get("version"), bool):
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
    """Read and verify a sequential (version 1) model file (``docs/packed_format.md``)."""
    model = load_file(path)
    if not isinstance(model, PackedModel):
        raise PackedFormatError(f"{path}: a version-2 graph, not a sequential model (load_file)")
    return model


def load_file(path: str | os.PathLike[str]) -> PackedModel | PackedGraph:
    """Read and verify a ``.xnor`` file of either version: every rule of the spec."""
    p = Path(path)
    where = str(p)
    buf = p.read_bytes()
    header, hend = _parse_preamble(buf, where)
    payload, shape, metadata = _check_envelope(buf, header, hend, where)
    used = bytearray(len(payload))  # which payload bytes some array covers
    if header["version"] == FORMAT_VERSION:
        body: Any = _read_layers(header, payload, used, where)
    else:
        body = _read_nodes(header, payload, used, where)
    if np.frombuffer(payload, np.uint8)[np.frombuffer(used, np.uint8) == 0].any():
        raise PackedFormatError(f"{where}: non-zero bytes in the payload's alignment padding")
    try:
        if header["version"] == FORMAT_VERSION:
            infer_shapes(body, tuple(shape))
            return PackedModel(body, tuple(shape), metadata, header)
        output = _get(header, "output", str, where)
        graph = PackedGraph(body, tuple(shape), output, metadata, header)
        graph_shapes(graph)
        return graph
    except ValueError as e:
        raise PackedFormatError(f"{where}: inconsistent model: {e}") from None


def _check_envelope(
    buf: bytes, header: dict[str, Any], hend: int, where: str
) -> tuple[memoryview, list[int], dict[str, Any]]:
    """The rules both versions share: format, payload position, size and checksum, header
    padding, input spec, metadata. Returns (payload, input shape, metadata)."""
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
    metadata = header.get("metadata", {})
    if not isinstance(metadata, dict):
        raise PackedFormatError(f"{where}: header field 'metadata' must be an object")
    return payload, shape, metadata


def _read_layers(header: dict[str, Any], payload: memoryview, used: bytearray,
                 where: str) -> list[Layer]:
    layers: list[Layer] = []
    for i, spec in enumerate(_get(header, "layers", list, where)):
        lw = f"{where}: layer {i}"
        typ = _get(spec, "type", str, lw)
        if typ not in LAYER_TYPES:
            raise PackedFormatError(f"{lw}: unknown layer type {typ!r}")
        params = _get(spec, "params", dict, lw)
        arrays = {
            name: _read_array(payload, used, name, a, f"{lw} array {name!r}", ARRAY_DTYPES)
            for name, a in _get(spec, "arrays", dict, lw).items()
        }
        try:
            layers.append(LAYER_TYPES[typ].from_spec(params, arrays))
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise PackedFormatError(f"{lw} ({typ}): invalid parameters: {e!r}") from None
    return layers


def _read_nodes(header: dict[str, Any], payload: memoryview, used: bytearray,
                where: str) -> list[Node]:
    """Version-2 nodes in file order; names unique, inputs earlier names or ``"input"``."""
    nodes: list[Node] = []
    seen = {"input"}
    for i, spec in enumerate(_get(header, "nodes", list, where)):
        nw = f"{where}: node {i}"
        name = _get(spec, "name", str, nw)
        op = _get(spec, "op", str, nw)
        inputs = _get(spec, "inputs", list, nw)
        if op not in NODE_TYPES:
            raise PackedFormatError(f"{nw}: unknown op {op!r}")
        cls = NODE_TYPES[op]
        if not name or name in seen:
            raise PackedFormatError(f"{nw}: name {name!r} is empty, 'input' or used before")
        if len(inputs) != cls.n_inputs or not all(isinstance(x, str) and x in seen
                                                  for x in inputs):
            raise PackedFormatError(
                f"{nw} ({op}): needs {cls.n_inputs} inputs naming earlier nodes, got {inputs!r}")
        seen.add(name)
        params = _get(spec, "params", dict, nw)
        arrays = {
            aname: _read_array(payload, used, aname, a, f"{nw} array {aname!r}",
                               cls.array_dtypes)
            for aname, a in _get(spec, "arrays", dict, nw).items()
        }
        try:
            nodes.append(cls.from_spec(name, tuple(inputs), params, arrays))
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise PackedFormatError(f"{nw} ({op}): invalid parameters: {e!r}") from None
    return nodes


def _read_array(
    payload: memoryview, used: bytearray, name: str, a: Any, aw: str, dtypes: dict[str, str]
) -> np.ndarray:
    """One array of the payload, checked: its dtype for its name, size, alignment, no overlap
    with another array, flips 0/1, finite floats."""
    if name not in dtypes:
        raise PackedFormatError(f"{aw}: unknown array name")
    dt = _get(a, "dtype", str, aw)
    if dt != dtypes[name]:
        raise PackedFormatError(f"{aw}: dtype {dt!r}, expected {dtypes[name]!r}")
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


def graph_shapes(graph: PackedGraph) -> dict[str, TShape]:
    """Static shape of every node's output (and of ``"input"``); ``ValueError`` if an op does
    not accept its inputs, an activation exceeds the size bound, a node other than the output
    is unused, or the output is not the last node or gives no scores."""
    dims = tuple(int(d) for d in graph.input_shape)
    if len(dims) != 3 or math.prod(dims) > MAX_VALUES:
        raise ValueError(f"a graph takes a (C, H, W) uint8 image, not {dims}")
    shapes = {"input": TShape("u8_image", dims)}
    used: set[str] = set()
    for node in graph.nodes:
        try:
            s = node.out_shape([shapes[x] for x in node.inputs])
        except ValueError as e:
            raise ValueError(f"node {node.name!r} ({node.op}): {e}") from None
        if math.prod(s.dims) > MAX_VALUES:
            raise ValueError(f"node {node.name!r}: output {s.describe()} too large")
        shapes[node.name] = s
        used.update(node.inputs)
    if not graph.nodes or graph.output != graph.nodes[-1].name:
        raise ValueError("the output must name the last node")
    if shapes[graph.output].kind != "scores":
        raise ValueError(f"the output gives {shapes[graph.output].describe()}, not scores")
    unused = [n.name for n in graph.nodes[:-1] if n.name not in used]
    if unused:
        raise ValueError(f"nodes {unused} feed nothing")
    return shapes
