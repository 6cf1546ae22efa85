"""Callbacks: per-epoch history (file + MLflow) with epoch wall time."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytorch_lightning as pl
from mlflow.tracking import MlflowClient

from xnorlab.io import write_json


class EpochHistory(pl.Callback):
    """After each epoch (validation included), record losses, accuracies, learning rate and
    the epoch's wall time to `history.json` and to the MLflow run."""

    def __init__(self, path: Path, client: MlflowClient | None, run_id: str | None):
        self.path = path
        self.client, self.run_id = client, run_id
        self.history: list[dict[str, float]] = (
            json.loads(path.read_text()) if path.exists() else []
        )
        self._start = 0.0
        self._logged: set[tuple[str, int]] = set()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A resumed run reruns any epoch whose checkpoint a kill prevented, and an earlier
        # attempt may already have logged it: MLflow keeps every row, so log each step once.
        if self.client is not None:
            for key in self.client.get_run(self.run_id).data.metrics:
                for m in self.client.get_metric_history(self.run_id, key):
                    self._logged.add((key, m.step))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:  # DDP: rank 0 records
            return
        epoch = trainer.current_epoch + 1
        row = {"epoch": epoch, "epoch_seconds": time.perf_counter() - self._start,
               "lr": trainer.optimizers[0].param_groups[0]["lr"]}
        for key, value in trainer.callback_metrics.items():
            if key.startswith(("train_", "val_")):
                row[key] = float(value)
        self.history = [h for h in self.history if h["epoch"] < epoch] + [row]
        write_json(self.path, self.history)
        if self.client is not None:
            for key, value in row.items():
                if key != "epoch" and (key, epoch) not in self._logged:
                    self.client.log_metric(self.run_id, key, value, step=epoch)
