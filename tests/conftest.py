"""Shared fixtures: a tiny MNIST-shaped dataset on disk and a fresh MLflow store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from xnorlab.data.idx import write_idx

ROOT = Path(__file__).resolve().parents[1]

pytest_plugins = ["tests.team.fixtures"]  # the team server, shared by tests/team and tests/ui


def write_tiny_mnist(raw_dir: Path, n_train: int = 300, n_test: int = 100, seed: int = 0) -> Path:
    """Write learnable MNIST-named IDX files: each class is a bright bar at its own row band."""
    rng = np.random.default_rng(seed)
    names = yaml.safe_load((ROOT / "conf/dataset/mnist.yaml").read_text())["files"]
    out = raw_dir / "mnist"
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 250
        write_idx(out / names[f"{split}_images"]["name"], images)
        write_idx(out / names[f"{split}_labels"]["name"], labels)
    return out


@pytest.fixture
def tiny_raw(tmp_path: Path) -> Path:
    """data/raw-like folder holding a tiny 'mnist'."""
    write_tiny_mnist(tmp_path / "raw")
    return tmp_path / "raw"


@pytest.fixture
def mlflow_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
