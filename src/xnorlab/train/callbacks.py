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

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
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
                if key != "epoch":
                    self.client.log_metric(self.run_id, key, value, step=epoch)
