"""MLflow conventions in one place: where the store is, run names, tags, sweep parents."""

from __future__ import annotations

import fcntl
import os
import platform
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from xnorlab.io import cpu_info, write_atomic
from xnorlab.schema import project_root

__all__ = [
    "ensure_experiment",
    "flatten",
    "git_commit",
    "machine_tags",
    "open_experiment",
    "project_root",
    "resolve_uri",
    "store_lock",
    "sweep_parent_run",
    "tracked_run",
]

PARENT_ID_FILE = "mlflow_parent_run_id"


def resolve_uri(uri: str | None, root: Path | None = None) -> str:
    """`uri` if given, else $MLFLOW_TRACKING_URI, else SQLite at <root>/mlflow.db (absolute,
    so a run started from another working directory lands in the same store)."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    root = (root or project_root()).resolve()
    return f"sqlite:///{root / 'mlflow.db'}"


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise first contact with a local SQLite store across processes.

    Two sweep jobs opening a new store at once both try to create its tables, and one fails.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{db}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_experiment(client: MlflowClient, name: str, artifact_root: Path | None) -> str:
    """Experiment id of `name`, creating it with artifacts under `artifact_root` if new."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = (artifact_root / name).resolve().as_uri() if artifact_root else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created meanwhile by a parallel job
        return client.get_experiment_by_name(name).experiment_id


def open_experiment(
    trk: Mapping[str, Any], root: Path | None = None
) -> tuple[MlflowClient, str, str]:
    """``(client, experiment_id, uri)`` for the ``tracking`` config ``trk`` (keys ``uri``,
    ``experiment``, ``artifact_root``; a relative artifact root is under the project root).

    First contact with a new SQLite store is serialised (see :func:`store_lock`).
    """
    root = root or project_root()
    uri = resolve_uri(trk.get("uri"), root)
    artifact_root = Path(trk["artifact_root"])
    artifact_root = artifact_root if artifact_root.is_absolute() else root / artifact_root
    with store_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        exp_id = ensure_experiment(client, trk["experiment"], artifact_root)
    return client, exp_id, uri


@contextmanager
def tracked_run(
    client: MlflowClient, experiment_id: str, run_name: str, tags: dict[str, str]
) -> Iterator[str]:
    """Create a run and yield its id; it ends FINISHED, or FAILED if the block raises."""
    run_id = client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
    try:
        yield run_id
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)


def git_commit(root: Path | None = None) -> str:
    """The current commit, with '-dirty' when the work tree has changes; 'unknown' outside git."""
    root = root or project_root()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def machine_tags() -> dict[str, str]:
    """What a timing depends on: CPU, thread count, library versions."""
    import numpy
    import pytorch_lightning
    import torch

    return {
        "machine.cpu": cpu_info().model,
        "machine.cores": str(os.cpu_count()),
        "machine.torch_threads": str(torch.get_num_threads()),
        "machine.python": platform.python_version(),
        "version.torch": torch.__version__,
        "version.lightning": pytorch_lightning.__version__,
        "version.numpy": numpy.__version__,
    }


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts/lists into dotted keys, for MLflow params."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(d, list | tuple) and any(isinstance(v, dict | list) for v in d):
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = d
    return out


def sweep_parent_run(
    client: MlflowClient, experiment_id: str, sweep_dir: Path, tags: dict[str, str]
) -> str:
    """The run id of the parent run of a Hydra multirun, created by whichever job comes first.

    A file lock in the sweep folder makes parallel jobs (joblib, ray on one machine) agree on
    one parent.
    """
    sweep_dir.mkdir(parents=True, exist_ok=True)
    id_file = sweep_dir / PARENT_ID_FILE
    with (sweep_dir / f"{PARENT_ID_FILE}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if id_file.exists():
            return id_file.read_text().strip()
        run = client.create_run(
            experiment_id, run_name=f"sweep-{sweep_dir.name}",
            tags={**tags, "xnorlab.kind": "sweep", "xnorlab.sweep_dir": str(sweep_dir)},
        )
        client.set_terminated(run.info.run_id)
        write_atomic(id_file, run.info.run_id)
        return run.info.run_id
