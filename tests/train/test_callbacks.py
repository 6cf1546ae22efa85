"""EpochHistory: one MLflow row per metric and epoch, even when an epoch is run twice."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from mlflow.tracking import MlflowClient

from xnorlab.train.callbacks import EpochHistory


def fake_trainer(epoch: int, val_acc: float) -> SimpleNamespace:
    opt = SimpleNamespace(param_groups=[{"lr": 0.1}])
    return SimpleNamespace(sanity_checking=False, is_global_zero=True, current_epoch=epoch - 1,
                           optimizers=[opt], callback_metrics={"val_acc": torch.tensor(val_acc)})


def test_an_epoch_rerun_after_a_kill_is_not_logged_twice(tmp_path, mlflow_uri):
    # Regression (fault harness): killed after logging epoch 2 but before its checkpoint, the
    # resumed run trained epoch 2 again and MLflow held two rows for step 2 of every metric.
    client = MlflowClient(mlflow_uri)
    run_id = client.create_run(client.create_experiment("x")).info.run_id
    killed = EpochHistory(tmp_path / "history.json", client, run_id)
    killed.on_train_start(None, None)
    for epoch in (1, 2):
        killed.on_train_epoch_start(None, None)
        killed.on_train_epoch_end(fake_trainer(epoch, 0.5 + epoch / 10), None)
    resumed = EpochHistory(tmp_path / "history.json", client, run_id)
    resumed.on_train_start(None, None)
    for epoch in (2, 3):
        resumed.on_train_epoch_start(None, None)
        resumed.on_train_epoch_end(fake_trainer(epoch, 0.5 + epoch / 10), None)
    for key in ("val_acc", "lr", "epoch_seconds"):
        assert sorted(m.step for m in client.get_metric_history(run_id, key)) == [1, 2, 3], key
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
