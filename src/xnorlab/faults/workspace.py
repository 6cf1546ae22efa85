"""A case's sandbox: tiny MNIST-shaped data, its own MLflow store, commands to run the stages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from xnorlab.data.idx import write_idx
from xnorlab.tracking import project_root


def write_tiny_mnist(raw_dir: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Learnable MNIST-named IDX files: each class is a bright bar in its own row band."""
    rng = np.random.default_rng(seed)
    names = yaml.safe_load((project_root() / "conf/dataset/mnist.yaml").read_text())["files"]
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


@dataclass
class Proc:
    """How a command ended."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False

    @property
    def killed(self) -> bool:
        return self.returncode == -9


def run_cmd(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 300,
            cwd: Path | None = None) -> Proc:
    """Run ``cmd`` (from the project root unless ``cwd``) and capture its outcome."""
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=cwd or project_root(), env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
        errs = err.stderr.decode() if isinstance(err.stderr, bytes) else (err.stderr or "")
        return Proc(-1, out, errs, time.perf_counter() - start, timed_out=True)
    return Proc(done.returncode, done.stdout, done.stderr, time.perf_counter() - start)


# An MLflow SQLite store with its tables already made: creating them costs each first process
# of a case several seconds, so the harness makes one and copies it (see Sandbox.ensure_store).
EMPTY_STORE: list[Path] = []


def make_empty_store(path: Path) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient(f"sqlite:///{path}").search_experiments()
    EMPTY_STORE[:] = [path]


@dataclass
class Sandbox:
    """One case's folder: ``raw/`` (shared data), ``models/``, ``packed/``, ``reports/``,
    ``mlflow.db`` and ``artifacts/`` of its own."""

    root: Path
    raw: Path
    train_args: list[str]

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def run_name(self) -> str:
        return "mnist-mlp-bnn"

    @property
    def out_dir(self) -> Path:
        return self.root / "models" / self.run_name

    def ensure_store(self) -> None:
        db = self.root / "mlflow.db"
        if EMPTY_STORE and not db.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.copy(EMPTY_STORE[0], db)

    def _tracking(self, artifacts: Path | None = None) -> list[str]:
        self.ensure_store()
        return [f"tracking.uri={self.uri}",
                f"tracking.artifact_root={artifacts or self.root / 'artifacts'}"]

    def _script(self, script: str, inject: bool) -> list[str]:
        py = [sys.executable]
        return [*py, "-m", "xnorlab.faults.inject", script] if inject else [*py, script]

    def train_cmd(self, *extra: str, inject: bool = True, artifacts: Path | None = None,
                  out_dir: Path | None = None) -> list[str]:
        return [*self._script("pipelines/train.py", inject), "trainer=smoke",
                f"data.raw_dir={self.raw}", *self._tracking(artifacts), *self.train_args,
                f"out_dir={out_dir or self.out_dir}",
                f"hydra.run.dir={self.root / 'hydra'}", *extra]

    def export_cmd(self, *extra: str, inject: bool = True, out_dir: Path | None = None
                   ) -> list[str]:
        return [*self._script("pipelines/export.py", inject), f"run={self.run_name}",
                f"paths.models_dir={self.root / 'models'}",
                f"paths.packed_dir={out_dir or self.root / 'packed'}",
                f"hydra.run.dir={self.root / 'hydra'}", *extra]

    def report_cmd(self, *extra: str, inject: bool = True, out_dir: Path | None = None
                   ) -> list[str]:
        return [*self._script("pipelines/report.py", inject), *self._tracking(),
                f"report.out_dir={out_dir or self.root / 'reports'}",
                f"report.benchmark={self.raw.parent / 'no-benchmark.json'}",  # same in every case
                f"report.readme={self.root / 'README.md'}",
                f"hydra.run.dir={self.root / 'hydra'}", *extra]


def case_env(**extra: Any) -> dict[str, str]:
    """The environment of a case's process: ours, minus any store override, plus ``extra``."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("XNORLAB_FAULT", "MLFLOW_"))}
    env.update({k: str(v) for k, v in extra.items()})
    return env
