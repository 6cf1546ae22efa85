"""A seeded training run is the same with and without quant.lean_backward and logs train_mem_."""

from __future__ import annotations

import pytest
import torch

from tests.train.test_run import compose_train, runs_of, smoke_overrides
from xnorlab.train.config import check_train_config
from xnorlab.train.module import Classifier
from xnorlab.train.run import run

pytestmark = pytest.mark.slow  # trains models


def test_lean_run_matches_standard_run_bit_for_bit(tmp_path, tiny_raw, mlflow_uri):
    results = {}
    for lean in ("false", "true"):
        out = tmp_path / f"out-{lean}"
        cfg = check_train_config(compose_train(smoke_overrides(
            tmp_path, tiny_raw, mlflow_uri, "model=mlp", "model.hidden=64", "quant=bnn",
            f"quant.lean_backward={lean}", f"out_dir={out}", f"run_name=lean-{lean}",
        )))
        metrics = run(cfg)
        weights = Classifier.load_from_checkpoint(
            out / "checkpoints" / "last.ckpt", map_location="cpu").model.state_dict()
        results[lean] = (metrics, weights)
    (m_std, w_std), (m_lean, w_lean) = results["false"], results["true"]
    assert w_std.keys() == w_lean.keys()
    for key in w_std:
        assert torch.equal(w_std[key], w_lean[key]), key
    assert m_std["test_acc"] == m_lean["test_acc"] and m_std["best_val_acc"] == m_lean[
        "best_val_acc"]
    assert m_lean["train_mem_saved_bytes"] < m_std["train_mem_saved_bytes"]
    assert m_lean["train_mem_param_bytes"] == m_std["train_mem_param_bytes"] > 0
    logged = {r.info.run_name: r.data.metrics for r in runs_of(mlflow_uri)}
    assert logged["lean-true"]["train_mem_saved_bytes"] == m_lean["train_mem_saved_bytes"]
