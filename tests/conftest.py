"""Shared fixtures: a tiny MNIST-shaped dataset on disk and a fresh MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest

from xnorlab.faults import workspace

ROOT = Path(__file__).resolve().parents[1]

pytest_plugins = ["tests.team.fixtures"]  # the team server, shared by tests/team and tests/ui


def write_tiny_mnist(raw_dir: Path, n_train: int = 300, n_test: int = 100, seed: int = 0) -> Path:
    """Learnable MNIST-named IDX files (see xnorlab.faults.workspace.write_tiny_mnist)."""
    return workspace.write_tiny_mnist(raw_dir, n_train, n_test, seed)


@pytest.fixture
def tiny_raw(tmp_path: Path) -> Path:
    """data/raw-like folder holding a tiny 'mnist'."""
    write_tiny_mnist(tmp_path / "raw")
    return tmp_path / "raw"


@pytest.fixture
def mlflow_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
