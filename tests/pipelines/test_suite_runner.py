"""pipelines/suite.py turns a suite's entries into training commands."""

from __future__ import annotations

import importlib.util

from hydra import compose, initialize_config_dir

from tests.conftest import ROOT


def load_suite_module():
    spec = importlib.util.spec_from_file_location("suite_runner", ROOT / "pipelines/suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paper_suite_commands_carry_the_paper_recipe():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("run_suite", overrides=["suite=paper"])
    commands = dict(load_suite_module().run_commands(cfg))
    assert set(commands) == set(cfg.suite.runs)
    cmd = commands["mnist-mlp-bnn"]
    assert "experiment=paper_mlp" in cmd and "quant=bnn" in cmd
    assert cmd[2:4] == ["-m", f"seed={cfg.suite.seeds}"]  # one sweep over the seeds
    assert "out_dir=models/paper/mnist-mlp-bnn/seed${seed}" in cmd
    assert "metrics_file=metrics/paper/mnist-mlp-bnn.json" in cmd


def test_distill_runs_point_at_their_teacher():
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("run_suite")
    commands = dict(load_suite_module().run_commands(cfg))
    cmd = commands["mnist-mlp-bnn-distill"]
    # each seed's student learns from the teacher trained with the same seed
    assert "distill.teacher=models/default/mnist-mlp-float/seed${seed}/checkpoints/best.ckpt" in cmd


def test_a_suite_with_bad_seeds_is_refused():
    import pytest

    from xnorlab.schema import ConfigError, suite_seeds

    assert suite_seeds({"seeds": "0,1,2"}) == [0, 1, 2]
    for bad in ("0,0", "a,b", "", "1;2"):
        with pytest.raises(ConfigError, match="distinct integers"):
            suite_seeds({"name": "x", "seeds": bad})


def test_paper_experiments_compose_into_valid_training_configs():
    from xnorlab.train.config import check_train_config

    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        mlp = check_train_config(compose("train", overrides=["experiment=paper_mlp"]))
        cnn = check_train_config(compose("train", overrides=["model=cnn", "experiment=paper_cnn"]))
    assert mlp["model"]["hidden"] == 4096 and mlp["trainer"]["max_epochs"] == 1000
    assert mlp["optim"]["loss"] == "squared_hinge" and mlp["model"]["dropout_hidden"] == 0.5
    assert cnn["model"]["width"] == 128 and cnn["data"]["batch_size"] == 50
