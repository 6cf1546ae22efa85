"""IDX and CIFAR-10 readers on small files the tests build."""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile

import numpy as np
import pytest

from xnorlab.data.arrays import load_arrays
from xnorlab.data.cifar import CifarFormatError, read_cifar10
from xnorlab.data.idx import IdxFormatError, read_idx, write_idx


def test_idx_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "x", images)
    assert np.array_equal(read_idx(tmp_path / "x"), images)
    labels = np.arange(5, dtype=np.int32)
    write_idx(tmp_path / "y", labels)
    assert read_idx(tmp_path / "y").tolist() == labels.tolist()


def test_idx_truncated_file_is_rejected(tmp_path):
    write_idx(tmp_path / "x", np.zeros((3, 4, 4), np.uint8))
    data = (tmp_path / "x").read_bytes()
    (tmp_path / "x").write_bytes(data[:-1])
    with pytest.raises(IdxFormatError, match="truncated"):
        read_idx(tmp_path / "x")
    (tmp_path / "x").write_bytes(data + b"\x00")
    with pytest.raises(IdxFormatError, match="trailing"):
        read_idx(tmp_path / "x")


def test_idx_wrong_magic_is_rejected(tmp_path):
    write_idx(tmp_path / "x", np.zeros((3, 4, 4), np.uint8))
    (tmp_path / "x.gz").write_bytes(gzip.compress((tmp_path / "x").read_bytes()))
    with pytest.raises(IdxFormatError, match="magic"):
        read_idx(tmp_path / "x.gz")


def make_idx_dataset(root, n_train=20, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    names = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        key = "train" if split == "train" else "test"
        write_idx(root / f"{split}-images", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / f"{split}-labels", rng.integers(0, 10, n).astype(np.uint8))
        names[f"{key}_images"] = {"name": f"{split}-images"}
        names[f"{key}_labels"] = {"name": f"{split}-labels"}
    return {"name": "toy", "format": "idx", "shape": [1, 28, 28], "num_classes": 10,
            "files": names, "mean": [0.5], "std": [0.5]}


def test_load_arrays_checks_pairing(tmp_path):
    cfg = make_idx_dataset(tmp_path)
    arrays = load_arrays(cfg, tmp_path)
    assert arrays.train_x.shape == (20, 1, 28, 28) and arrays.test_y.shape == (10,)
    write_idx(tmp_path / "train-labels", np.zeros(19, np.uint8))
    with pytest.raises(IdxFormatError, match="pair up"):
        load_arrays(cfg, tmp_path)


def make_cifar_archive(path, per_batch=3, seed=0, drop=None):
    rng = np.random.default_rng(seed)
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            if name == drop:
                continue
            batch = {b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                     b"labels": rng.integers(0, 10, per_batch).tolist()}
            blob = pickle.dumps(batch)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def test_cifar_reader(tmp_path):
    make_cifar_archive(tmp_path / "c.tar.gz")
    train_x, train_y, test_x, test_y = read_cifar10(tmp_path / "c.tar.gz")
    assert train_x.shape == (15, 3, 32, 32) and train_x.dtype == np.uint8
    assert test_x.shape == (3, 3, 32, 32) and len(train_y) == 15 and len(test_y) == 3


def test_cifar_missing_batch_and_truncated_archive(tmp_path):
    make_cifar_archive(tmp_path / "c.tar.gz", drop="data_batch_3")
    with pytest.raises(CifarFormatError, match="data_batch_3"):
        read_cifar10(tmp_path / "c.tar.gz")
    make_cifar_archive(tmp_path / "d.tar.gz")
    data = (tmp_path / "d.tar.gz").read_bytes()
    (tmp_path / "d.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CifarFormatError, match="unreadable"):
        read_cifar10(tmp_path / "d.tar.gz")
