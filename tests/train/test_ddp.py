"""One run trained by two processes (Lightning DDP on CPU, gloo), recorded once by rank 0."""

from __future__ import annotations

import json
import subprocess

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT
from tests.train.test_run import runs_of, train_cmd

pytestmark = [pytest.mark.slow, pytest.mark.ddp]


def test_ddp_on_two_cpu_processes_logs_each_metric_once(tmp_path, tiny_raw, mlflow_uri):
    out = tmp_path / "out"
    cmd = train_cmd(tmp_path, tiny_raw, mlflow_uri, "model=mlp", "model.hidden=32", "quant=bnn",
                    "trainer.strategy=ddp", "trainer.devices=2", f"out_dir={out}")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Starting with 2 processes" in proc.stdout + proc.stderr
    (logged,) = runs_of(mlflow_uri)  # rank 1 opened no run of its own
    assert logged.info.status == "FINISHED"
    assert logged.data.metrics["world_size"] == 2
    client = MlflowClient(mlflow_uri)
    for key in ("val_acc", "train_loss", "lr"):  # one value per epoch, not one per rank
        assert [m.step for m in client.get_metric_history(logged.info.run_id, key)] == [1, 2]
    assert [h["epoch"] for h in json.loads((out / "history.json").read_text())] == [1, 2]
    assert len(client.get_metric_history(logged.info.run_id, "test_acc")) == 1
