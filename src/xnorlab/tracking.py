"""MLflow conventions in one place: where the store is, run names, tags, sweep parents."""

from __future__ import annotations

import fcntl
import json
import os
import platform
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from hydra.experimental.callback import Callback
from mlflow.tracking import MlflowClient

from xnorlab.io import cpu_info, write_atomic
from xnorlab.schema import project_root

__all__ = [
    "PrepareStore",
    "ensure_experiment",
    "flatten",
    "git_commit",
    "is_remote",
    "machine_tags",
    "mark_training_experiment",
    "open_experiment",
    "prepare_store",
    "project_root",
    "ray_tags",
    "resolve_uri",
    "runs_url",
    "slurm_tags",
    "sqlite_journal_mode",
    "sqlite_path",
    "store_lock",
    "sweep_parent_run",
    "tracked_run",
    "ui_link",
]

PARENT_ID_FILE = "mlflow_parent_run_id"
# MLflow's model-training kind. The 3.17.2 UI does not read it (its experiment kind follows the
# "GenAI | Model training" switch or ?workflowType=; see ``runs_url``); other MLflow tools do.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# A saved view of the runs table: the experiment tag mlflow.sharedViewState.<VIEW_KEY> holding
# MLflow 3.17's envelope {name, createdAt, updatedAt, state}, so the UI lists it by VIEW_NAME
# under "Views"; ``runs_url`` opens it. MLflow has no default view: the table's default
# columns are fixed in its JS (Source, Models, Dataset) and a browser's own choice persists.
VIEW_KEY = "xnorlab"
VIEW_NAME = "xnorlab: dataset, model, quant, error, size, time"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_COLUMNS = [
    "tags.`dataset`", "tags.`model`", "tags.`quant`", "tags.`suite`",
    "metrics.`test_error_pct`", "metrics.`model_bytes_1bit`", "metrics.`model_bytes_fp32`",
    "metrics.`train_seconds`", "metrics.`epochs`",
]
SQLITE_BUSY_TIMEOUT_S = 60.0


def resolve_uri(uri: str | None, root: Path | None = None) -> str:
    """`uri` if given, else $MLFLOW_TRACKING_URI, else SQLite at <root>/mlflow.db (absolute,
    so a run started from another working directory lands in the same store)."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    root = (root or project_root()).resolve()
    return f"sqlite:///{root / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a local SQLite URI, else None."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive file lock beside a local SQLite store (no-op for other stores)."""
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{db}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def prepare_store(uri: str) -> None:
    """Make a local SQLite store ready for concurrent writers; a no-op for other stores.

    Once, under the store's file lock: switch the file to WAL journaling (readers never block
    the writer, and it persists in the file) and create MLflow's schema, so parallel jobs
    never race on the tables or the migrations. MLflow's own sessions wait up to 20 s on a
    locked database (PRAGMA busy_timeout); ours wait ``SQLITE_BUSY_TIMEOUT_S``.
    """
    db = sqlite_path(uri)
    if db is None:
        return
    with store_lock(uri):
        with sqlite3.connect(db, timeout=SQLITE_BUSY_TIMEOUT_S) as con:
            if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                con.execute("PRAGMA journal_mode=WAL")
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)  # creates the schema


def sqlite_journal_mode(uri: str) -> str:
    """The journal mode of a local SQLite store ('wal' once prepared)."""
    db = sqlite_path(uri)
    if db is None:
        raise ValueError(f"{uri} is not a local SQLite store")
    with sqlite3.connect(db, timeout=SQLITE_BUSY_TIMEOUT_S) as con:
        return con.execute("PRAGMA journal_mode").fetchone()[0]


def is_remote(uri: str) -> bool:
    """A tracking server (http/https): it decides where artifacts go (proxied store)."""
    return uri.startswith(("http://", "https://"))


def runs_view_state() -> str:
    """The runs-table view saved under ``VIEW_KEY``: the columns a reader needs."""
    return json.dumps({"selectedColumns": VIEW_COLUMNS, "orderByKey": "attributes.start_time",
                       "orderByAsc": False})


def runs_view_tag(now_ms: int | None = None) -> str:
    """The value of ``VIEW_TAG``: the view state in MLflow's saved-view envelope."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return json.dumps({"name": VIEW_NAME, "createdAt": now_ms, "updatedAt": now_ms,
                       "state": runs_view_state()})


def _saved_view(value: str | None) -> tuple[str, str] | None:
    """(name, state) of a saved-view tag value, None for a missing or pre-envelope one."""
    try:
        view = json.loads(value or "")
        return (view["name"], view["state"]) if isinstance(view, dict) else None
    except (ValueError, KeyError):
        return None


def runs_url(base: str, experiment_id: str) -> str:
    """The UI's link to an experiment's runs, in model-training mode, in the saved view."""
    return (f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs"
            f"?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}")


def ui_link(uri: str, base: str, experiment: str = "xnorlab") -> str:
    """Where a reader should open the UI: `experiment`'s runs (``runs_url``) if the store
    has it, else the experiment list in model-training mode."""
    found = MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
    if found is None:
        return f"{base.rstrip('/')}/#/experiments?workflowType=machine_learning"
    return runs_url(base, found.experiment_id)


def mark_training_experiment(client: MlflowClient, experiment_id: str) -> None:
    """Tag the experiment as model training and save the runs-table view (idempotent: the
    view is rewritten only when its name or columns changed)."""
    have = client.get_experiment(experiment_id).tags
    for key, value in EXPERIMENT_KIND.items():
        if have.get(key) != value:
            client.set_experiment_tag(experiment_id, key, value)
    if _saved_view(have.get(VIEW_TAG)) != (VIEW_NAME, runs_view_state()):
        client.set_experiment_tag(experiment_id, VIEW_TAG, runs_view_tag())


def ensure_experiment(client: MlflowClient, name: str, artifact_root: Path | None) -> str:
    """Experiment id of `name`, creating it (artifacts under `artifact_root`) if new, and
    marked as a model-training experiment for the UI.

    Against a tracking server pass ``artifact_root=None``: the server's proxied artifact store
    then holds the artifacts (``mlflow-artifacts:/``) and clients upload them over HTTP.
    """
    found = client.get_experiment_by_name(name)
    if found is not None:
        exp_id = found.experiment_id
    else:
        location = (artifact_root / name).resolve().as_uri() if artifact_root else None
        try:
            exp_id = client.create_experiment(name, artifact_location=location,
                                              tags=EXPERIMENT_KIND)
        except mlflow.exceptions.MlflowException:  # created meanwhile by a parallel job
            exp_id = client.get_experiment_by_name(name).experiment_id
    mark_training_experiment(client, exp_id)
    return exp_id


def open_experiment(
    trk: Mapping[str, Any], root: Path | None = None
) -> tuple[MlflowClient, str, str]:
    """``(client, experiment_id, uri)`` for the ``tracking`` config ``trk`` (keys ``uri``,
    ``experiment``, ``artifact_root``; a relative artifact root is under the project root).

    A local SQLite store is prepared first (:func:`prepare_store`); against a tracking server
    (http) the artifact root is the server's, not ``artifact_root``.
    """
    root = root or project_root()
    uri = resolve_uri(trk.get("uri"), root)
    artifact_root = Path(trk["artifact_root"])
    artifact_root = artifact_root if artifact_root.is_absolute() else root / artifact_root
    prepare_store(uri)
    with store_lock(uri):  # one creator of the experiment among parallel jobs
        client = MlflowClient(tracking_uri=uri)
        exp_id = ensure_experiment(client, trk["experiment"],
                                   None if is_remote(uri) else artifact_root)
    return client, exp_id, uri


class PrepareStore(Callback):
    """Hydra callback: set up the store and experiment in the launching process, before a
    multirun's parallel jobs start (conf/train.yaml, ``hydra.callbacks``)."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        open_experiment(OmegaConf.to_container(config.tracking, resolve=True))


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


SLURM_ENV = {  # tag -> environment variable SLURM sets in a job
    "slurm.job_id": "SLURM_JOB_ID",
    "slurm.array_job_id": "SLURM_ARRAY_JOB_ID",
    "slurm.array_task_id": "SLURM_ARRAY_TASK_ID",
    "slurm.cluster": "SLURM_CLUSTER_NAME",
    "slurm.node": "SLURMD_NODENAME",
}


def slurm_tags() -> dict[str, str]:
    """The SLURM job a run is (empty outside SLURM): links a run to `squeue`/`scancel`."""
    return {tag: os.environ[var] for tag, var in SLURM_ENV.items() if var in os.environ}


def ray_tags() -> dict[str, str]:
    """The Ray task a run is (empty outside a Ray worker): its job, node and worker process.

    Ray is read only if already imported (a Ray worker has it), so other runs pay nothing.
    """
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return {}
    context = ray.get_runtime_context()
    if context.get_task_id() is None:  # the driver, not a task
        return {}
    return {"ray.job_id": context.get_job_id(), "ray.task_id": context.get_task_id(),
            "ray.node_id": context.get_node_id(), "ray.worker_pid": str(os.getpid())}


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
