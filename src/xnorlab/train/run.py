"""One training run, start to finish: data, model, fit, measure, write, log to MLflow."""

from __future__ import annotations

import errno
import json
import logging
import os
import resource
import shutil
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytorch_lightning as pl
import torch
import yaml
from mlflow.tracking import MlflowClient

from xnorlab import tracking
from xnorlab.data.datamodule import ImageDataModule
from xnorlab.data.download import FileSpec
from xnorlab.io import TMP_SUFFIX, write_atomic, write_json
from xnorlab.models.build import build_model
from xnorlab.models.kmeans_io import save_kmeans_checkpoint
from xnorlab.train.callbacks import EpochHistory
from xnorlab.train.checkpoint_io import AtomicCheckpointIO
from xnorlab.train.measure import (
    PeakRSS,
    confusion_matrix,
    inference_seconds_per_example,
    predict,
    size_report,
)
from xnorlab.train.memory import train_mem_metrics
from xnorlab.train.module import Classifier
from xnorlab.train.plots import plot_confusion, plot_curves, plot_image_grid
from xnorlab.train.seeds import add_seed_history, add_seed_metrics

log = logging.getLogger(__name__)


class DataError(ValueError):
    """The run's data cannot be loaded or split as configured (the message says which)."""


@dataclass
class RunContext:
    """Where a run writes, and its MLflow handle."""

    cfg: dict[str, Any]
    out: Path
    client: MlflowClient
    run_id: str
    resume_from: Path | None
    artifacts: list[Path] = field(default_factory=list)


def ddp_rank() -> int:
    """This process's global rank as the launcher set it (Lightning's DDP launcher, torchrun,
    srun); 0 when not distributed."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare_out_dir(out: Path, cfg: dict[str, Any], resume: bool) -> Path | None:
    """Make `out` ready; return the checkpoint to resume from, if any.

    Only an unfinished run of the same config resumes. A folder holding a finished run (it has
    metrics.json: rerunning means retraining, e.g. after a code change) or a run of another
    config is moved aside to models/.replaced/ rather than mixed with this run or deleted.
    """
    saved = out / "config.yaml"
    last = out / "checkpoints" / "last.ckpt"
    if saved.exists():
        other_config = _saved_config(saved) != cfg
        if other_config or (out / "metrics.json").exists():
            aside = out.parent / ".replaced" / f"{out.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            aside.parent.mkdir(parents=True, exist_ok=True)
            why = "a run of another config" if other_config else "a finished run"
            log.warning("%s holds %s; moving it to %s", out, why, aside)
            shutil.move(str(out), aside)
            out.mkdir(parents=True)
            if (aside / "mlflow_run_id").exists():  # so start_tracking marks it KILLED if it
                shutil.copy(aside / "mlflow_run_id", out)  # was killed while still logging
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.rglob(f".*{TMP_SUFFIX}"):  # left by a writer killed before its rename
        stale.unlink()
    write_atomic(saved, yaml.safe_dump(cfg, sort_keys=False))
    if resume and last.exists():
        if _loadable(last):
            return last
        log.warning("%s is unreadable (killed while writing?); starting from scratch", last)
        last.unlink()
    if last.exists() or (out / "history.json").exists():
        why = "resume=false" if last.exists() else "no checkpoint to resume from"
        log.info("%s: starting %s from scratch", why, out)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        (out / "history.json").unlink(missing_ok=True)
    return None


def _saved_config(saved: Path) -> Any:
    """The config a folder's run was started with; None if the file is unreadable (torn,
    foreign), which counts as another config: the folder is moved aside, not trusted."""
    try:
        return yaml.safe_load(saved.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        log.warning("%s is unreadable (%s); treating its folder as another config's", saved,
                    str(err).splitlines()[0])
        return None


def _loadable(checkpoint: Path) -> bool:
    # Lightning writes checkpoints in place, so a kill mid-write can leave a torn file.
    try:
        torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception:
        return False
    return True


def data_fingerprint(dataset: dict[str, Any]) -> str:
    """The checksums the data was verified against, as one tag value."""
    specs = [FileSpec.from_config(k, v) for k, v in sorted(dataset["files"].items())]
    return ",".join(f"{s.name}:{s.digest[:12]}" for s in specs)


def start_tracking(cfg: dict[str, Any], out: Path, sweep_dir: Path | None) -> tuple[
    MlflowClient, str
]:
    """Create (or, on resume, reopen) this run's MLflow run; nest it under a sweep parent."""
    root = tracking.project_root()
    client, exp_id, uri = tracking.open_experiment(cfg["tracking"], root)
    tags = {
        "git_commit": tracking.git_commit(root),
        "data_checksums": data_fingerprint(cfg["dataset"]),
        "suite": cfg["suite"]["name"],
        "dataset": cfg["dataset"]["name"],
        "model": cfg["model"]["name"],
        "quant": cfg["quant"]["name"],
        "seed": str(cfg["seed"]),  # the report groups a configuration's runs over seeds
        "stage": "train",
        "xnorlab.kind": "train",
        **tracking.machine_tags(),
        **tracking.slurm_tags(),
        **tracking.ray_tags(),
    }
    if sweep_dir is not None:
        tags["mlflow.parentRunId"] = tracking.sweep_parent_run(client, exp_id, sweep_dir, tags)
    id_file = out / "mlflow_run_id"
    resuming = (out / "checkpoints" / "last.ckpt").exists()
    if id_file.exists() and resuming and _run_exists(client, id_file.read_text().strip()):
        run_id = id_file.read_text().strip()
        client.update_run(run_id, status="RUNNING")
    else:
        if id_file.exists():  # an earlier attempt died before its first checkpoint
            _mark_killed(client, id_file.read_text().strip())
        run_id = client.create_run(exp_id, run_name=cfg["run_name"], tags=tags).info.run_id
        id_file.write_text(run_id)
        params = tracking.flatten(cfg)
        for key, value in params.items():
            client.log_param(run_id, key, str(value)[:6000])
    log.info("MLflow run %s in %s", run_id, uri)
    return client, run_id


def _run_exists(client: MlflowClient, run_id: str) -> bool:
    try:
        client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return False  # logged to another store: the resumed run starts a new MLflow run
    return True


def _mark_killed(client: MlflowClient, run_id: str) -> None:
    try:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, status="KILLED")
    except Exception:  # a run from another store: nothing to mark
        pass


def load_teacher(ref: str, client: MlflowClient) -> torch.nn.Module:
    """A float teacher network from a checkpoint path or an MLflow run id."""
    path = Path(ref)
    if not path.exists():
        try:
            path = Path(client.download_artifacts(ref, "checkpoints/best.ckpt"))
        except Exception as err:
            raise FileNotFoundError(
                f"distill.teacher={ref!r} is neither a checkpoint file nor an MLflow run id "
                f"with artifact checkpoints/best.ckpt ({err})"
            ) from err
    return Classifier.load_from_checkpoint(path, map_location="cpu").model


def fit_network(ctx: RunContext, dm: ImageDataModule) -> dict[str, float]:
    """Train with Lightning (resuming if asked), then measure the best checkpoint."""
    cfg = ctx.cfg
    tcfg = cfg["trainer"]
    teacher = load_teacher(cfg["distill"]["teacher"], ctx.client) if cfg["distill"][
        "teacher"] else None
    module = Classifier(cfg, teacher=teacher)
    # One extra step on a copy (RNG forked): the run trains exactly as without it.
    train_x, train_y = dm.splits["train"]
    mem = train_mem_metrics(module.model, train_x[: cfg["data"]["batch_size"]],
                            train_y[: cfg["data"]["batch_size"]])
    ckpt = pl.callbacks.ModelCheckpoint(
        dirpath=ctx.out / "checkpoints", filename="best", monitor="val_acc", mode="max",
        save_last=True, enable_version_counter=False,
    )
    history = EpochHistory(ctx.out / "history.json", ctx.client if ctx.run_id else None,
                           ctx.run_id)
    callbacks: list[pl.Callback] = [ckpt, history]
    if tcfg["max_minutes"]:
        # Checked per epoch so a time-limited run ends on whole, validated epochs.
        budget = timedelta(minutes=tcfg["max_minutes"])
        callbacks.append(pl.callbacks.Timer(duration=budget, interval="epoch"))
    trainer = pl.Trainer(
        max_epochs=tcfg["max_epochs"], accelerator=tcfg["accelerator"], devices=tcfg["devices"],
        strategy=tcfg["strategy"],
        deterministic=tcfg["deterministic"], enable_progress_bar=tcfg["progress_bar"],
        log_every_n_steps=tcfg["log_every_n_steps"], logger=False, num_sanity_val_steps=0,
        callbacks=callbacks, default_root_dir=str(ctx.out), plugins=[AtomicCheckpointIO()],
    )
    if ctx.resume_from:
        log.info("resuming from %s", ctx.resume_from)
    start = time.perf_counter()
    with PeakRSS() as rss:
        trainer.fit(module, datamodule=dm, ckpt_path=ctx.resume_from)
    peak_mb = rss.peak_mb
    train_seconds = time.perf_counter() - start
    if trainer.interrupted:
        raise KeyboardInterrupt("training interrupted; rerun to resume from the last checkpoint")
    if not trainer.is_global_zero:  # a DDP worker: rank 0 tests, measures and records
        return {}

    best = Classifier.load_from_checkpoint(ckpt.best_model_path, map_location="cpu").model
    test_x, test_y = dm.splits["test"]
    pred = predict(best, test_x)
    epochs = history.history
    ctx.artifacts += [
        plot_curves(epochs, cfg["run_name"], ctx.out / "curves.png"),
        _confusion(cfg, test_y.numpy(), pred, ctx.out),
    ]
    if cfg["tracking"]["log_checkpoint"]:
        ctx.artifacts.append(Path(ckpt.best_model_path))
    return {
        "test_acc": float(np.mean(pred == test_y.numpy())),
        "best_val_acc": max(h.get("val_acc", 0.0) for h in epochs),
        "epochs": len(epochs),
        "world_size": trainer.world_size,  # processes that trained it (DDP: devices x nodes)
        "train_seconds_this_session": train_seconds,
        "train_seconds": float(sum(h["epoch_seconds"] for h in epochs)),
        "epoch_seconds_mean": float(np.mean([h["epoch_seconds"] for h in epochs])),
        "infer_seconds_per_example": inference_seconds_per_example(best, test_x),
        "peak_rss_mb": float(peak_mb),
        **size_report(best),
        **mem,
    }


def _confusion(cfg: dict[str, Any], y: np.ndarray, pred: np.ndarray, out: Path) -> Path:
    counts = confusion_matrix(y, pred, cfg["dataset"]["num_classes"])
    return plot_confusion(counts, cfg["dataset"]["classes"], cfg["run_name"], out / "confusion.png")


def fit_kmeans(ctx: RunContext, dm: ImageDataModule) -> dict[str, float]:
    """K-means baseline: fit on the training split, label clusters by majority, test."""
    cfg = ctx.cfg
    model_cfg = dict(cfg["model"])
    if model_cfg.get("seed") is None:
        model_cfg["seed"] = cfg["seed"]
    model = build_model(model_cfg, cfg["quant"])
    train_x, train_y = (t.numpy() for t in dm.splits["train"])
    test_x, test_y = (t.numpy() for t in dm.splits["test"])
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    start = time.perf_counter()
    with PeakRSS() as rss:
        model.fit(flat(train_x))
    peak_mb = rss.peak_mb
    train_seconds = time.perf_counter() - start
    model.map_clusters_to_labels(train_y, num_classes=cfg["dataset"]["num_classes"])
    # the fitted model is the run's checkpoint: the export stage packs it (Hamming metric)
    save_kmeans_checkpoint(model, cfg, ctx.out / "checkpoints" / "best.ckpt")
    start = time.perf_counter()
    pred = model.predict_labels(flat(test_x))
    infer = (time.perf_counter() - start) / len(test_x)
    hard = model.hardest_examples(flat(test_x), test_y, n=32)
    names = cfg["dataset"]["classes"]
    captions = [f"{names[test_y[i]]} -> {names[pred[i]]}" for i in hard]
    ctx.artifacts += [
        _confusion(cfg, test_y, pred, ctx.out),
        plot_image_grid(test_x[hard], captions, f"{cfg['run_name']}: hardest test examples "
                        "(true -> predicted)", ctx.out / "hardest.png"),
    ]
    centers = model.cluster_centers_
    bits = centers.size if model.metric == "hamming" else 32 * centers.size
    return {
        "test_acc": float(np.mean(pred == test_y)),
        "epochs": model.n_iter_,
        "train_seconds_this_session": train_seconds,
        "train_seconds": train_seconds,
        "infer_seconds_per_example": infer,
        "peak_rss_mb": float(peak_mb),
        "params_total": centers.size,
        "params_binary": centers.size if model.metric == "hamming" else 0,
        "model_bytes_fp32": 4 * centers.size,
        "model_bytes_1bit": bits / 8,
        "compression_ratio": 32 * centers.size / bits,
    }


def log_artifact(client: MlflowClient, run_id: str, path: Path, sub: str | None = None) -> None:
    """``client.log_artifact``; on a full disk the error names the artifact store (MLflow's
    copy raises a bare ENOSPC)."""
    try:
        client.log_artifact(run_id, str(path), sub)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        where = client.get_run(run_id).info.artifact_uri
        raise OSError(errno.ENOSPC, f"no space left on device while copying {path.name} to "
                      f"the MLflow artifact store {where}") from err


def run(cfg: dict[str, Any], sweep_dir: Path | None = None) -> dict[str, float]:
    """Train (or fit) the configured model; return and record its metrics.

    Writes `out_dir/{config.yaml, metrics.json, history.json, checkpoints/, *.png}` and logs
    params, tags, metrics and artifacts to MLflow. `sweep_dir` nests the run under a sweep's
    parent run.
    """
    out = Path(cfg["out_dir"])
    worker = ddp_rank() > 0
    if worker:  # started by Lightning's DDP launcher: trains in step with rank 0, records nothing
        last = out / "checkpoints" / "last.ckpt"
        resume_from = last if cfg["resume"] and last.exists() else None
    else:
        resume_from = prepare_out_dir(out, cfg, cfg["resume"])
    if cfg["trainer"]["threads"]:
        torch.set_num_threads(cfg["trainer"]["threads"])
    pl.seed_everything(cfg["seed"], workers=True, verbose=False)
    d = cfg["data"]
    dm = ImageDataModule(
        cfg["dataset"], Path(d["raw_dir"]) / cfg["dataset"]["name"], batch_size=d["batch_size"],
        eval_batch_size=d["eval_batch_size"], val_size=d["val_size"], val_split=d["val_split"],
        seed=cfg["seed"], train_limit=d["train_limit"], eval_limit=d["eval_limit"],
    )
    try:
        dm.setup()
    except (ValueError, OSError) as err:  # bad or missing data files, impossible sizes
        raise DataError(f"{cfg['dataset']['name']} data in {dm.data_dir}: {err}") from err
    if worker:
        client = MlflowClient(tracking.resolve_uri(cfg["tracking"]["uri"]))  # for a teacher id
        fit_network(RunContext(cfg, out, client, None, resume_from), dm)  # type: ignore[arg-type]
        return {}
    client, run_id = start_tracking(cfg, out, sweep_dir)
    ctx = RunContext(cfg, out, client, run_id, resume_from)
    try:  # any failure from here on (SIGTERM from scancel included) is recorded, not lost
        metrics = _fit_and_record(ctx, dm)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    log.info("%s: test accuracy %.2f%% (run %s)", cfg["run_name"], 100 * metrics["test_acc"],
             run_id)
    return metrics


def _fit_and_record(ctx: RunContext, dm: ImageDataModule) -> dict[str, float]:
    """Fit, then write and log the metrics and artifacts; the run ends FINISHED."""
    cfg, out, client, run_id = ctx.cfg, ctx.out, ctx.client, ctx.run_id
    fit = fit_kmeans if cfg["model"]["name"] == "kmeans" else fit_network
    metrics = fit(ctx, dm)
    metrics["test_error_pct"] = 100 * (1 - metrics["test_acc"])
    metrics["peak_rss_mb_getrusage"] = _peak_rss_mb()
    metrics = {k: float(v) for k, v in metrics.items()}
    write_json(out / "metrics.json", metrics)
    history = out / "history.json"  # K-means has no epochs: an empty curve
    curve = json.loads(history.read_text()) if history.exists() else []
    # Summaries outside out_dir, which DVC tracks as metrics and plots: every seed of the run.
    for path, add, data in ((cfg["metrics_file"], add_seed_metrics, metrics),
                            (cfg["history_file"], add_seed_history, curve)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            add(Path(path), cfg["seed"], data)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    for path in [out / "config.yaml", out / "metrics.json", *ctx.artifacts]:
        sub = "checkpoints" if path.suffix == ".ckpt" else None
        log_artifact(client, run_id, path, sub)
    if (out / "history.json").exists():
        log_artifact(client, run_id, out / "history.json")
    client.set_terminated(run_id)
    return metrics
