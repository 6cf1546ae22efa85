"""A shared DVC remote: one clone trains and pushes, another pulls and retrains nothing.

Two remotes: a directory, and an S3-compatible store (moto's S3 server on 127.0.0.1, through
dvc-s3; both optional, from requirements-s3.txt, installed here where missing).
"""

from __future__ import annotations

import filecmp
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT
from tests.pipelines.conftest import serve_tiny_mnist
from tests.pipelines.test_dvc_smoke import dvc, make_project
from xnorlab.team.server import free_port

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


@dataclass
class Remote:
    """A DVC remote: its URL, the README's `dvc remote modify` settings (`--local` ones stay
    out of git), and a count of the objects pushed to it."""

    url: str
    objects: Callable[[], int]
    settings: dict[str, str] = field(default_factory=dict)
    local_settings: dict[str, str] = field(default_factory=dict)


def ensure_s3_packages() -> None:
    """dvc-s3 and moto, installed from requirements-s3.txt where missing (one pip at a time in
    this venv: scripts/ray-local.sh may install into it at once under parallel tests)."""
    if all(importlib.util.find_spec(m) for m in ("dvc_s3", "moto", "wrapt")):
        return
    lock = str(Path(sys.prefix) / ".pip-install.lock")
    pip = subprocess.run(["flock", "-w", "600", lock, sys.executable, "-m", "pip", "install",
                          "--quiet", "--no-deps",
                          "--disable-pip-version-check", "-r", str(ROOT / "requirements-s3.txt")],
                         capture_output=True, text=True, timeout=600)
    if pip.returncode != 0:
        pytest.skip(f"dvc-s3/moto are not installed and cannot be: {pip.stderr.strip()[-500:]}")


@pytest.fixture
def s3_store(tmp_path) -> Iterator[str]:
    """The endpoint of moto's S3 server on 127.0.0.1, in its own process group."""
    ensure_s3_packages()
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with (tmp_path / "moto.log").open("w") as log:
        server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")),
                                   "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                requests.get(endpoint, timeout=1)
                break
            except requests.ConnectionError:
                assert server.poll() is None and time.time() < deadline, \
                    (tmp_path / "moto.log").read_text()[-2000:]
                time.sleep(0.2)
        yield endpoint
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@pytest.fixture(params=["directory", "s3"])
def remote(request, tmp_path) -> Remote:
    if request.param == "directory":  # a shared disk or NFS mount in real use
        folder = tmp_path / "remote"
        return Remote(str(folder), lambda: sum(p.is_file() for p in folder.rglob("*")))
    endpoint = request.getfixturevalue("s3_store")
    assert requests.put(f"{endpoint}/xnorlab", timeout=10).ok  # create the bucket

    def objects() -> int:
        listing = requests.get(f"{endpoint}/xnorlab?list-type=2", timeout=10)
        return listing.text.count("<Key>")

    # moto takes any key; a real store's keys go to .dvc/config.local, as here
    return Remote("s3://xnorlab/dvc", objects, {"endpointurl": endpoint},
                  {"access_key_id": "testing", "secret_access_key": "testing"})


@pytest.fixture(scope="module")
def trained_origin(tmp_path_factory) -> Path:
    """A git + DVC project that trained the tiny suite's TARGET and committed dvc.lock; its
    MLflow store is origin.db beside it. Shared by the remotes' tests: training is the slow part."""
    root = tmp_path_factory.mktemp("dvc-remote")
    origin = root / "origin"
    with serve_tiny_mnist(root) as (url, digests):
        make_project(origin, url, digests)
        shutil.copy(ROOT / ".dvc/.gitignore", origin / ".dvc/.gitignore")  # cache, tmp: not in git
        git(origin, "init", "-q")
        trained = dvc(origin, "repro", TARGET, env=env_with_store(root / "origin.db", origin))
    assert trained.returncode == 0, trained.stdout[-1500:] + trained.stderr[-3000:]
    assert f"Running stage '{TARGET}'" in trained.stdout
    git(origin, "add", "-A")
    git(origin, "commit", "-qm", "trained")
    runs = [r for r in train_runs(root / "origin.db") if r.data.tags.get("xnorlab.kind") == "train"]
    assert sorted(r.data.tags["seed"] for r in runs) == ["0", "1"]  # the tiny suite's seeds
    for run in runs:
        assert run.info.artifact_uri.startswith(origin.as_uri())  # not in this checkout
    return origin


def test_a_second_clone_pulls_data_and_models_and_retrains_nothing(trained_origin, remote,
                                                                    tmp_path):
    origin, clone = trained_origin, tmp_path / "clone"
    env = env_with_store(origin.parent / "origin.db", origin)
    # the README's `dvc remote add` and `dvc remote modify [--local]` lines (-f: the module's
    # tests share the origin, each with its own remote)
    assert dvc(origin, "remote", "add", "-f", "-d", "shared", remote.url, env=env).returncode == 0
    for local, settings in ((False, remote.settings), (True, remote.local_settings)):
        for key, value in settings.items():
            flag = ["--local"] if local else []
            done = dvc(origin, "remote", "modify", *flag, "shared", key, value, env=env)
            assert done.returncode == 0, done.stderr
    git(origin, "commit", "-qam", f"remote {remote.url}")
    pushed = dvc(origin, "push", env=env)
    assert pushed.returncode == 0, pushed.stderr[-3000:]
    assert remote.objects() > 0

    git(tmp_path, "clone", "-q", str(origin), str(clone))
    env = env_with_store(tmp_path / "clone.db", clone)
    assert not (clone / ".dvc/config.local").exists()  # the keys stayed out of git
    for key, value in remote.local_settings.items():
        assert dvc(clone, "remote", "modify", "--local", "shared", key, value,
                   env=env).returncode == 0
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
