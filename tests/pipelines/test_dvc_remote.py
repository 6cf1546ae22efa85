"""A shared DVC remote: one clone trains and pushes, another pulls and retrains nothing."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT
from tests.pipelines.test_dvc_smoke import dvc, make_project

pytestmark = pytest.mark.slow

TARGET = "train@mnist-mlp-float"  # the tiny suite's data and one trained model
GIT = ["git", "-c", "user.name=xnorlab-test", "-c", "user.email=test@localhost"]


def git(cwd: Path, *args: str) -> None:
    subprocess.run([*GIT, *args], cwd=cwd, check=True, capture_output=True)


def env_with_store(store: Path, project: Path) -> dict[str, str]:
    # PYTHONPATH: the copy's own src/, so its project root (and mlartifacts/) is the copy,
    # not this checkout
    return {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}",
            "PYTHONPATH": str(project / "src"),
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def train_runs(store: Path) -> list:
    client = MlflowClient(f"sqlite:///{store}")
    exp = client.get_experiment_by_name("xnorlab")
    return client.search_runs([exp.experiment_id]) if exp else []


def test_a_second_clone_pulls_data_and_models_and_retrains_nothing(tmp_path, served_tiny_mnist):
    url, digests = served_tiny_mnist
    origin, clone, remote = tmp_path / "origin", tmp_path / "clone", tmp_path / "remote"
    make_project(origin, url, digests)
    shutil.copy(ROOT / ".dvc/.gitignore", origin / ".dvc/.gitignore")  # cache, tmp: not in git
    git(origin, "init", "-q")
    env = env_with_store(tmp_path / "origin.db", origin)
    # the README's directory remote (a shared disk or NFS mount in real use)
    assert dvc(origin, "remote", "add", "-d", "shared", str(remote), env=env).returncode == 0

    trained = dvc(origin, "repro", TARGET, env=env)
    assert trained.returncode == 0, trained.stdout[-1500:] + trained.stderr[-3000:]
    assert f"Running stage '{TARGET}'" in trained.stdout
    git(origin, "add", "-A")
    git(origin, "commit", "-qm", "trained")
    pushed = dvc(origin, "push", env=env)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert any(p.is_file() for p in remote.rglob("*"))

    git(tmp_path, "clone", "-q", str(origin), str(clone))
    env = env_with_store(tmp_path / "clone.db", clone)
    assert not (clone / "models/mnist-mlp-float").exists()  # git holds only DVC's pointers
    assert not (clone / "data/raw/mnist").exists()
    # one run and its data (a plain `dvc pull` fails on the stages this tiny repro skipped)
    pulled = dvc(clone, "pull", "--with-deps", TARGET, env=env)
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    for rel in ("data/raw/mnist/train-images-idx3-ubyte",
                "models/mnist-mlp-float/seed0/checkpoints/best.ckpt",
                "models/mnist-mlp-float/seed1/metrics.json"):
        assert filecmp.cmp(origin / rel, clone / rel, shallow=False), rel

    again = dvc(clone, "repro", TARGET, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Running stage" not in again.stdout, again.stdout[-1500:]
    assert train_runs(tmp_path / "clone.db") == []  # nothing trained, nothing logged
    trained = [r for r in train_runs(tmp_path / "origin.db")
               if r.data.tags.get("xnorlab.kind") == "train"]
    assert sorted(r.data.tags["seed"] for r in trained) == ["0", "1"]  # the tiny suite's seeds
    for run in trained:
        assert run.info.artifact_uri.startswith(origin.as_uri())  # not in this checkout
