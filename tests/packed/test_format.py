import json
import struct

import numpy as np
import pytest

from xnorlab.packed.bits import pack_signs
from xnorlab.packed.engine import PackedEngine
from xnorlab.packed.format import (
    FORMAT_VERSION,
    MAGIC,
    PackedFormatError,
    load_packed,
    read_header,
    save_packed,
)
from xnorlab.packed.layers import Dense, Flatten


def _engine(seed=0):
    rng = np.random.default_rng(seed)
    w1 = pack_signs(rng.choice([-1, 1], size=(20, 12)))
    w2 = pack_signs(rng.choice([-1, 1], size=(3, 20)))
    layers = [
        Flatten(),
        Dense(
            weight=w1,
            in_features=12,
            uint8_input=True,
            thresh=rng.integers(-300, 300, 20),
            flip=rng.random(20) < 0.5,
        ),
        Dense(weight=w2, in_features=20, scale=rng.normal(size=3), shift=rng.normal(size=3)),
    ]
    return PackedEngine(layers, (1, 3, 4), metadata={"config": {"a": 1}})


@pytest.fixture()
def saved(tmp_path):
    eng = _engine()
    path = eng.save(tmp_path / "m.xnor")
    return eng, path


def test_roundtrip(saved, tmp_path):
    eng, path = saved
    loaded = PackedEngine.load(path)
    x = np.random.default_rng(1).integers(0, 256, size=(9, 1, 3, 4), dtype=np.uint8)
    assert np.array_equal(loaded.scores(x), eng.scores(x))
    for a, b in zip(loaded.forward_int(x), eng.forward_int(x), strict=True):
        assert np.array_equal(a, b)
    assert loaded.metadata["config"] == {"a": 1}
    h = read_header(path)
    assert h["version"] == FORMAT_VERSION and len(h["payload"]["sha256"]) == 64
    assert h["payload"]["offset"] % 64 == 0
    assert [spec["type"] for spec in h["layers"]] == ["flatten", "dense", "dense"]
    assert [p.name for p in tmp_path.iterdir()] == ["m.xnor"]  # no temp files left
    assert path.stat().st_mode & 0o644 == 0o644  # not mkstemp's 0600
    # deterministic bytes
    assert eng.save(tmp_path / "again.xnor").read_bytes() == path.read_bytes()


def test_truncated(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    for cut in (3, 20, 60, len(data) - 1):
        p = tmp_path / f"t{cut}.xnor"
        p.write_bytes(data[:cut])
        with pytest.raises(PackedFormatError, match="truncated|magic"):
            load_packed(p)
    (tmp_path / "long.xnor").write_bytes(data + b"\0")
    with pytest.raises(PackedFormatError, match="trailing"):
        load_packed(tmp_path / "long.xnor")


def test_bad_magic_and_version(saved, tmp_path):
    _, path = saved
    data = bytearray(path.read_bytes())
    bad = bytearray(data)
    bad[:8] = b"NOTXNOR\0"
    (tmp_path / "m1.xnor").write_bytes(bad)
    with pytest.raises(PackedFormatError, match="magic"):
        load_packed(tmp_path / "m1.xnor")
    bad = bytearray(data)
    struct.pack_into("<I", bad, len(MAGIC), 3)
    (tmp_path / "m2.xnor").write_bytes(bad)
    with pytest.raises(PackedFormatError, match="version 3"):
        load_packed(tmp_path / "m2.xnor")
    # version 2 (a graph) in the preamble of a version-1 header: the two disagree
    struct.pack_into("<I", bad, len(MAGIC), 2)
    (tmp_path / "m3.xnor").write_bytes(bad)
    with pytest.raises(PackedFormatError, match="version"):
        load_packed(tmp_path / "m3.xnor")


def test_flipped_bytes(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    h = read_header(path)
    for name, pos in (("payload", h["payload"]["offset"] + 5), ("header", 60)):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        p = tmp_path / f"{name}.xnor"
        p.write_bytes(bad)
        with pytest.raises(PackedFormatError, match="checksum"):
            PackedEngine.load(p)


def test_inconsistent_header_is_format_error(tmp_path):
    eng = _engine()
    path = eng.save(tmp_path / "m.xnor")
    data = bytearray(path.read_bytes())
    # rewrite the header with a wrong shape but a valid checksum
    import hashlib

    hlen = struct.unpack_from("<I", data, 12)[0]
    header = json.loads(bytes(data[48 : 48 + hlen]))
    header["layers"][1]["arrays"]["weight"]["shape"] = [21, 1]
    hb = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    hb = hb + b" " * (hlen - len(hb))
    assert len(hb) == hlen
    data[48 : 48 + hlen] = hb
    data[16:48] = hashlib.sha256(hb).digest()
    path.write_bytes(data)
    with pytest.raises(PackedFormatError, match="inconsistent"):
        load_packed(path)


def test_input_validation(saved):
    eng, _ = saved
    with pytest.raises(ValueError, match="uint8"):
        eng.predict(np.zeros((2, 1, 3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        eng.predict(np.zeros((2, 3, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="shape"):
        eng.scores(np.zeros((2, 1, 4, 3), dtype=np.uint8))
    assert eng.predict(np.zeros((0, 1, 3, 4), np.uint8)).shape == (0,)


def test_save_is_atomic_on_error(tmp_path, monkeypatch):
    eng = _engine()
    path = eng.save(tmp_path / "m.xnor")
    before = path.read_bytes()
    import os

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        save_packed(path, eng.layers, eng.input_shape)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.xnor"]
