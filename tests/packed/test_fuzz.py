"""Fuzz the `.xnor` reader: every mutated file raises PackedFormatError or loads and runs.

Mutations of small valid files (version 1: a dense model, a conv model with a max-pool and a
dense layer after a flatten, BinaryConnect and K-means models; version 2: a one-block ViT
graph with every node op): truncation, random bit flips, header edits re-signed with a valid
checksum (so the edit reaches the structural checks), payload bit flips re-signed (so they reach the
flip / padding-bit / finiteness checks or make a different valid model), and overlapping arrays.
A model that loads must run on the NumPy reference and the numba engine with equal scores.
"""

import copy
import hashlib
import json
import signal
import struct

import numpy as np
import pytest

from xnorlab.packed.bits import pack_signs
from xnorlab.packed.centroids import NearestCentroid
from xnorlab.packed.engine import PackedEngine
from xnorlab.packed.format import ALIGN, PackedFormatError
from xnorlab.packed.graph import GraphEngine
from xnorlab.packed.layers import (
    Conv2d,
    Dense,
    Flatten,
    MaxPool2d,
)
from xnorlab.packed.nodes import (
    Attention,
    BCLinear,
    BinaryLinear,
    LayerNorm,
    Linear,
    MeanTokens,
    Normalize,
    PatchEmbed,
    Residual,
)
from xnorlab.packed.real_layers import RealConv2d, RealDense

CASES_PER_MODEL = 1000
PREAMBLE = 48


def _dense_model(rng):
    w1 = pack_signs(rng.choice([-1, 1], size=(20, 12)))
    w2 = pack_signs(rng.choice([-1, 1], size=(3, 20)))
    layers = [
        Flatten(),
        Dense(weight=w1, in_features=12, uint8_input=True, thresh=rng.integers(-300, 300, 20),
              flip=rng.random(20) < 0.5),
        Dense(weight=w2, in_features=20, scale=rng.normal(size=3), shift=rng.normal(size=3)),
    ]
    return PackedEngine(layers, (1, 3, 4), metadata={"config": {"a": 1}}, backend="numpy")


def _conv_model(rng):
    c1 = pack_signs(rng.choice([-1, 1], size=(5, 9)))  # uint8 conv, K = 3*3*1
    c2 = pack_signs(rng.choice([-1, 1], size=(3, 3, 3, 5))).reshape(3, -1)  # binary conv
    d = pack_signs(rng.choice([-1, 1], size=(4, 3, 3, 3))).reshape(4, -1)  # after a flatten
    layers = [
        Conv2d(weight=c1, in_channels=1, uint8_input=True, thresh=rng.integers(-200, 200, 5),
               flip=rng.random(5) < 0.5),
        MaxPool2d((2, 2), (2, 2), (0, 0)),
        Conv2d(weight=c2, in_channels=5, thresh=rng.integers(-10, 10, 3),
               flip=rng.random(3) < 0.5),
        Flatten(),
        Dense(weight=d, in_features=27, scale=rng.normal(size=4), shift=rng.normal(size=4)),
    ]
    return PackedEngine(layers, (1, 6, 6), backend="numpy")


def _real_model(rng):
    """BinaryConnect layers: a uint8 real conv with a pool, a real dense after the flatten."""
    c = pack_signs(rng.choice([-1, 1], size=(3, 9)))
    d = pack_signs(rng.choice([-1, 1], size=(4, 27)))
    layers = [
        RealConv2d(weight=c, in_channels=1, pool=(2, 2), uint8_input=True,
                   scale=rng.normal(size=3), shift=rng.normal(size=3)),
        Flatten(),
        RealDense(weight=d, in_features=27, scale=rng.normal(size=4), shift=rng.normal(size=4)),
    ]
    return PackedEngine(layers, (1, 6, 6), backend="numpy")


def _kmeans_model(rng):
    w = pack_signs(rng.choice([-1, 1], size=(5, 70)))
    layers = [Flatten(), NearestCentroid(weight=w, labels=rng.integers(0, 3, 5), in_features=70,
                                         pixel_threshold=128)]
    return PackedEngine(layers, (1, 7, 10), backend="numpy")


def _vit_graph(rng):
    """A version-2 graph: one pre-norm block with every node type (dim 4, 2 heads), then a
    BinaryConnect MLP."""
    def f(*shape):
        return rng.normal(size=shape).astype(np.float32)

    def signs(o, k):
        return pack_signs(rng.choice([-1, 1], size=(o, k)))

    nodes = [
        Normalize("norm_in", ("input",), mean=f(1), std=np.ones(1, np.float32)),
        PatchEmbed("embed", ("norm_in",), patch=2, weight=f(4, 4), bias=f(4), pos=f(4, 4)),
        LayerNorm("ln1", ("embed",), weight=f(4), bias=f(4)),
        BinaryLinear("qkv", ("ln1",), in_features=4, weight=signs(12, 4), scale=f(12),
                     bias=f(12)),
        Attention("attn", ("qkv",), heads=2),
        BinaryLinear("proj", ("attn",), in_features=4, weight=signs(4, 4), scale=f(4), bias=f(4)),
        Residual("res1", ("embed", "proj"), gamma=f(4)),
        BinaryLinear("mlp0", ("res1",), in_features=4, weight=signs(8, 4),
                     thresh=rng.integers(-4, 5, 8), thresh_low=rng.integers(-6, -2, 8)),
        BinaryLinear("mlp1", ("mlp0",), in_features=8, real_input=False, weight=signs(4, 8),
                     scale=f(4), bias=f(4)),
        Residual("res2", ("res1", "mlp1"), gamma=f(4)),
        # a BinaryConnect MLP (real activations, GELU between)
        BCLinear("bc0", ("res2",), in_features=4, gelu=True, weight=signs(8, 4), scale=f(8),
                 bias=f(8)),
        BCLinear("bc1", ("bc0",), in_features=8, weight=signs(4, 8), scale=f(4), bias=f(4)),
        Residual("res3", ("res2", "bc1"), gamma=f(4)),
        LayerNorm("ln2", ("res3",), weight=f(4), bias=f(4)),
        MeanTokens("pool", ("ln2",)),
        Linear("head", ("pool",), weight=f(3, 4), bias=f(3)),
    ]
    return GraphEngine(nodes, (1, 4, 5), metadata={"config": {"a": 1}}, backend="numpy")


def _split(data: bytes):
    hlen = struct.unpack_from("<I", data, 12)[0]
    header = json.loads(data[PREAMBLE : PREAMBLE + hlen])
    return header, data[header["payload"]["offset"] :]


def _build(header: dict, payload: bytes, fix_offset: bool) -> bytes:
    """A file from a (possibly edited) header: checksum valid, offset recomputed if asked."""
    for _ in range(4):
        hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        off = -(-(PREAMBLE + len(hb)) // ALIGN) * ALIGN
        pay = header.get("payload") if isinstance(header, dict) else None
        if not fix_offset or not isinstance(pay, dict) or pay.get("offset") == off:
            break
        pay["offset"] = off
    version = header.get("version", 1) if isinstance(header, dict) else 1
    version = version if isinstance(version, int) and 0 <= version < 2**32 else 1
    pre = b"XNORPAK\x00" + struct.pack("<II", version, len(hb)) + hashlib.sha256(hb).digest()
    return pre + hb + b"\x00" * (off - PREAMBLE - len(hb)) + payload


def _leaves(obj, path=()):
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, i))


def _edit(header: dict, rng) -> dict:
    """One random edit of a random node: a number nudged, a value replaced by another type,
    a key deleted, a list shortened or grown."""
    h = copy.deepcopy(header)
    paths = [p for p in _leaves(h) if p]
    path = paths[rng.integers(len(paths))]
    parent = h
    for k in path[:-1]:
        parent = parent[k]
    key, val = path[-1], parent[path[-1]]
    choice = rng.integers(7)
    if choice == 0 and isinstance(val, int) and not isinstance(val, bool):
        parent[key] = int(val + rng.choice([-64, -1, 1, 64, 1 << 20, -val, val]))
    elif choice == 1:
        parent[key] = [None, True, -1, 0, 2**40, 1.5, "x", [], {}, [1, 1]][rng.integers(10)]
    elif choice == 2 and isinstance(parent, dict):
        del parent[key]
    elif choice == 3 and isinstance(val, list) and val:
        val.pop(rng.integers(len(val)))
    elif choice == 4 and isinstance(val, list):
        val.append(copy.deepcopy(val[0]) if val else 1)
    elif choice == 5 and isinstance(val, str):
        parent[key] = ["dense", "conv2d", "<u8", "|b1", "<f4", "<i4", "bits", "", "input", "real",
                       "attention", "qkv", "ln1", "head"][rng.integers(14)]
    elif choice == 6 and isinstance(val, bool):
        parent[key] = not val
    else:
        parent[key] = 0
    return h


def _mutate(data: bytes, rng) -> tuple[str, bytes]:
    kind = ["truncate", "bitflip", "header", "header", "payload", "overlap"][rng.integers(6)]
    if kind == "truncate":
        return kind, data[: rng.integers(len(data))]
    if kind == "bitflip":
        b = bytearray(data)
        for _ in range(rng.integers(1, 4)):
            b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
        return kind, bytes(b)
    header, payload = _split(data)
    if kind == "header":
        return kind, _build(_edit(header, rng), payload, fix_offset=bool(rng.integers(2)))
    if kind == "payload":
        b = bytearray(payload)
        for _ in range(rng.integers(1, 3)):
            b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
        header["payload"]["sha256"] = hashlib.sha256(b).hexdigest()
        return kind, _build(header, bytes(b), fix_offset=False)
    units = header["layers"] if "layers" in header else header["nodes"]
    specs = [a for unit in units for a in unit["arrays"].values()]
    i, j = rng.choice(len(specs), size=2, replace=False)
    specs[i]["offset"] = specs[j]["offset"]
    return kind, _build(header, payload, fix_offset=False)


class _Hang(Exception):
    pass


def _alarm(*_):
    raise _Hang


@pytest.mark.parametrize(
    "build", [_dense_model, _conv_model, _real_model, _kmeans_model, _vit_graph])
def test_mutated_files_fail_cleanly_or_run(build, tmp_path):
    rng = np.random.default_rng(1234)
    eng = build(rng)
    data = eng.save(tmp_path / "m.xnor").read_bytes()
    assert type(PackedEngine.load(tmp_path / "m.xnor")) is type(eng)
    x = rng.integers(0, 256, size=(3, *eng.input_shape), dtype=np.uint8)
    path = tmp_path / "fuzz.xnor"
    # compile the numba kernels first: a JIT interrupted by the alarm would count as a hang
    PackedEngine.load(tmp_path / "m.xnor", backend="numba", threads=1).scores(x)
    outcomes: dict[str, dict[str, int]] = {}
    bad = []
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for case in range(CASES_PER_MODEL):
            kind, mutated = _mutate(data, rng)
            path.write_bytes(mutated)
            signal.alarm(60)  # a hang fails the case instead of the CI job
            try:
                got = PackedEngine.load(path, backend="numpy")
                # an edited input shape can still make a valid model (patches drop remainders)
                xi = x if got.input_shape == eng.input_shape else rng.integers(
                    0, 256, size=(3, *got.input_shape), dtype=np.uint8)
                s = got.scores(xi)
                if case % 10 == 0:  # the fast engine agrees on what loaded (JIT is slow)
                    fast = PackedEngine.load(path, backend="numba", threads=1)
                    assert np.array_equal(fast.predict(xi), got.predict(xi))
                    layers = getattr(got, "layers", None)  # None: a graph (float LayerNorm sums)
                    if layers is not None and not any(
                            isinstance(m, RealConv2d | RealDense) for m in layers):
                        assert np.array_equal(fast.scores(xi), s, equal_nan=True)
                assert s.shape == (3, got.num_classes) and s.dtype == np.float32
                result = "ran"
            except PackedFormatError:
                result = "rejected"
            except (Exception, _Hang) as e:  # noqa: BLE001 - the point: nothing else may escape
                bad.append((case, kind, f"{type(e).__name__}: {e}"[:300]))
                result = "error"
            finally:
                signal.alarm(0)
            outcomes.setdefault(kind, {}).setdefault(result, 0)
            outcomes[kind][result] += 1
    finally:
        signal.signal(signal.SIGALRM, old)
    assert not bad, f"{len(bad)} cases escaped: {bad[:5]}; outcomes {outcomes}"
    # the fuzzer reached both sides: some edits are rejected, some still make a valid model
    assert sum(o.get("rejected", 0) for o in outcomes.values()) > CASES_PER_MODEL // 3
    assert outcomes["payload"].get("ran", 0) > 0, outcomes


def _resigned(data: bytes, edit) -> bytes:
    header, payload = _split(data)
    payload = bytearray(payload)
    edit(header, payload)
    header["payload"]["sha256"] = hashlib.sha256(payload).hexdigest()
    return _build(header, bytes(payload), fix_offset=False)


def _array(header, layer, name):
    return header["layers"][layer]["arrays"][name]


INVALID = {
    "header padding": lambda h, p: None,  # handled below (outside the checksums)
    "overlap": lambda h, p: _array(h, 1, "thresh").__setitem__(
        "offset", _array(h, 1, "weight")["offset"]),
    "flip byte 2": lambda h, p: p.__setitem__(_array(h, 1, "flip")["offset"], 2),
    "padding bits": lambda h, p: p.__setitem__(_array(h, 1, "weight")["offset"] + 7, 0x80),
    "alignment slack": lambda h, p: p.__setitem__(_array(h, 1, "weight")["nbytes"] + 1, 1),
    "nan scale": lambda h, p: p.__setitem__(
        slice(_array(h, 2, "scale")["offset"], _array(h, 2, "scale")["offset"] + 4),
        np.float32(np.nan).tobytes()),
    "wrong dtype": lambda h, p: _array(h, 2, "scale").__setitem__("dtype", "<i4"),
}


@pytest.mark.parametrize("what", list(INVALID))
def test_spec_invalid_files_rejected(what, tmp_path):
    """Each rule the spec calls invalid, broken alone, with valid checksums."""
    eng = _dense_model(np.random.default_rng(0))
    data = eng.save(tmp_path / "m.xnor").read_bytes()
    if what == "header padding":
        hlen = struct.unpack_from("<I", data, 12)[0]
        assert (PREAMBLE + hlen) % ALIGN, "the fixture needs some header padding"
        bad = bytearray(data)
        bad[PREAMBLE + hlen] = 1
        bad = bytes(bad)
    else:
        bad = _resigned(data, INVALID[what])
    (tmp_path / "bad.xnor").write_bytes(bad)
    with pytest.raises(PackedFormatError):
        PackedEngine.load(tmp_path / "bad.xnor")
    # the unedited file, rebuilt the same way, still loads (the edit alone is the fault)
    (tmp_path / "ok.xnor").write_bytes(_resigned(data, lambda h, p: None))
    assert (tmp_path / "ok.xnor").read_bytes() == data
    PackedEngine.load(tmp_path / "ok.xnor")


def _node(header, name):
    return next(n for n in header["nodes"] if n["name"] == name)


GRAPH_INVALID = {
    "duplicate name": lambda h, p: _node(h, "ln2").__setitem__("name", "ln1"),
    "input from a later node": lambda h, p: _node(h, "qkv").__setitem__("inputs", ["attn"]),
    "cycle onto itself": lambda h, p: _node(h, "attn").__setitem__("inputs", ["attn"]),
    "unused node": lambda h, p: _node(h, "res2").__setitem__("inputs", ["res1", "proj"]),
    "output not last": lambda h, p: h.__setitem__("output", "pool"),
    "unknown op": lambda h, p: _node(h, "pool").__setitem__("op", "max_tokens"),
    "threshold dtype": lambda h, p: _node(h, "mlp0")["arrays"]["thresh"].__setitem__(
        "dtype", "<f4"),
    "padding bits": lambda h, p: p.__setitem__(
        _node(h, "qkv")["arrays"]["weight"]["offset"] + 7, 0x80),
    "bits into a real input": lambda h, p: _node(h, "proj").__setitem__("inputs", ["mlp0"]),
    "version 1 body": lambda h, p: h.__setitem__("layers", h.pop("nodes")),
    "bc_linear padding bits": lambda h, p: p.__setitem__(
        _node(h, "bc0")["arrays"]["weight"]["offset"] + 7, 0x80),
    "bits into bc_linear": lambda h, p: _node(h, "bc0").__setitem__("inputs", ["mlp0"]),
    "bc_linear output": lambda h, p: _node(h, "bc0")["params"].__setitem__("output", "bits"),
    "bc_linear width": lambda h, p: _node(h, "bc1")["params"].__setitem__("in_features", 4),
}


GRAPH_INVALID_MORE = {
    "missing param": lambda h, p: _node(h, "attn")["params"].clear(),
    "extra param": lambda h, p: _node(h, "pool")["params"].__setitem__("axis", 1),
    "negative std": lambda h, p: p.__setitem__(
        slice(_node(h, "norm_in")["arrays"]["std"]["offset"],
              _node(h, "norm_in")["arrays"]["std"]["offset"] + 4), np.float32(-1).tobytes()),
}
GRAPH_INVALID.update(GRAPH_INVALID_MORE)

@pytest.mark.parametrize("what", list(GRAPH_INVALID))
def test_graph_invalid_files_rejected(what, tmp_path):
    """Version-2 rules, each broken alone with valid checksums."""
    data = _vit_graph(np.random.default_rng(0)).save(tmp_path / "g.xnor").read_bytes()
    (tmp_path / "bad.xnor").write_bytes(_resigned(data, GRAPH_INVALID[what]))
    with pytest.raises(PackedFormatError):
        PackedEngine.load(tmp_path / "bad.xnor")
    (tmp_path / "ok.xnor").write_bytes(_resigned(data, lambda h, p: None))
    assert (tmp_path / "ok.xnor").read_bytes() == data

