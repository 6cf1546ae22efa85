"""Reader for the CIFAR-10 "python version" archive (cifar-10-python.tar.gz), read in place."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np

TRAIN_MEMBERS = tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6))
TEST_MEMBERS = ("cifar-10-batches-py/test_batch",)


class CifarFormatError(ValueError):
    """The archive is not a well-formed CIFAR-10 python archive."""


def _read_batch(tar: tarfile.TarFile, member: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        handle = tar.extractfile(member)
    except KeyError:
        raise CifarFormatError(f"{path}: missing member {member}") from None
    if handle is None:
        raise CifarFormatError(f"{path}: member {member} is not a file")
    # The archive is only read after its checksum matched the published one, so unpickling
    # the dataset authors' own batches is safe here.
    batch = pickle.load(handle, encoding="bytes")
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except KeyError as err:
        raise CifarFormatError(f"{path}: {member} has no key {err}") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise CifarFormatError(
            f"{path}: {member} has data {data.shape} and {len(labels)} labels; "
            "expected (N, 3072) and N labels"
        )
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar10(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (train_images, train_labels, test_images, test_labels); images are (N,3,32,32)."""
    path = Path(path)
    try:
        with tarfile.open(path, "r:*") as tar:
            train = [_read_batch(tar, m, path) for m in TRAIN_MEMBERS]
            test = [_read_batch(tar, m, path) for m in TEST_MEMBERS]
    except (tarfile.TarError, EOFError, OSError, pickle.UnpicklingError) as err:
        raise CifarFormatError(f"{path}: unreadable archive ({err})") from err
    train_x = np.concatenate([x for x, _ in train])
    train_y = np.concatenate([y for _, y in train])
    return train_x, train_y, test[0][0], test[0][1]
