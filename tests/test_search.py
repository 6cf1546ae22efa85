"""Optuna search over training runs: validation-scored trials as MLflow children, best written."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT
from xnorlab.search import best_experiment_yaml, suggest, trial_overrides


def test_lr_decay_sets_lr_end_below_lr_and_the_best_file_is_an_experiment():
    space = {"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
             "lr_decay": {"type": "float", "low": 0.01, "high": 0.1, "log": True},
             "model.hidden": {"type": "categorical", "choices": [16, 32]}}
    trial = optuna.create_study().ask()
    values = suggest(trial, space)
    over = dict(o.split("=") for o in trial_overrides(values))
    assert float(over["optim.lr_end"]) == pytest.approx(values["optim.lr"] * values["lr_decay"])
    assert "lr_decay" not in over
    text = best_experiment_yaml(values, ["model=mlp"], "note")
    assert text.startswith("# @package _global_")
    assert yaml.safe_load(text)["model"]["hidden"] == values["model.hidden"]
    with pytest.raises(ValueError, match="choose float, int or categorical"):
        suggest(trial, {"x": {"type": "uniform"}})


def tiny_search_cmd(tmp_path: Path, name: str, n_trials: int, trial_args: list[str],
                    *extra: str) -> list[str]:
    """pipelines/search.py over a tiny space (conf/hparams_search/<name>.yaml under tmp_path)."""
    (tmp_path / "conf/hparams_search").mkdir(parents=True)
    (tmp_path / f"conf/hparams_search/{name}.yaml").write_text(yaml.safe_dump({
        "name": name, "fixed": ["model=mlp", "quant=bnn"],
        "space": {"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
                  "lr_decay": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
                  "trainer.max_epochs": {"type": "int", "low": 1, "high": 3},
                  "model.hidden": {"type": "categorical", "choices": [16, 32]}}}))
    return [sys.executable, "pipelines/search.py", f"hydra.searchpath=[file://{tmp_path}/conf]",
            f"hparams_search={name}", f"n_trials={n_trials}",
            f"train_overrides=[{','.join(repr(a) for a in ['trainer=smoke', *trial_args])}]",
            f"sweep_dir={tmp_path / 'search'}", f"hydra.run.dir={tmp_path / 'hydra'}", *extra]


@pytest.mark.slow
def test_a_small_search_scores_trials_on_validation_and_writes_the_best(tmp_path, tiny_raw,
                                                                        mlflow_uri):
    best = tmp_path / "best_tiny.yaml"
    trial_args = [f"data.raw_dir={tiny_raw}", f"tracking.uri={mlflow_uri}",
                  f"tracking.artifact_root={tmp_path / 'artifacts'}"]
    cmd = tiny_search_cmd(tmp_path, "tiny", 3, trial_args, f"best_out={best}")
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("xnorlab").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("xnorlab.kind") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("xnorlab.kind") == "train"]
    assert sorted(r.info.run_name for r in trials) == [f"tiny-trial{i}" for i in range(3)]
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
    assert {r.info.status for r in trials} == {"FINISHED"}
    # the best file holds the trial with the best validation accuracy (not test accuracy)
    top = max(trials, key=lambda r: r.data.metrics["best_val_acc"])
    text = best.read_text()
    assert f"validation accuracy {top.data.metrics['best_val_acc']:.4f}" in text
    assert parent.info.run_id in text
    chosen = yaml.safe_load(text)
    assert chosen["model"]["hidden"] == int(top.data.params["model.hidden"])
    assert chosen["optim"]["lr"] == pytest.approx(float(top.data.params["optim.lr"]))
    assert chosen["trainer"]["max_epochs"] == int(top.data.params["trainer.max_epochs"])
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
@pytest.mark.team
def test_a_search_stored_on_the_team_postgresql_keeps_its_study_there(team_server, tmp_path,
                                                                      tiny_raw):
    """The README's commands: createdb, then a search with storage on that database and its
    trials logged as MLflow children to the team server (MLFLOW_TRACKING_URI)."""
    port, password = team_server.pg_port, (team_server.state_dir / "pg.password").read_text()
    tag = uuid.uuid4().hex[:8]  # the session's server is shared: a database and experiment
    database, experiment = f"optuna_{tag}", f"search-{tag}"  # of our own, no checkpoint
    env = {**os.environ, "PGPASSWORD": password.strip(), "MLFLOW_TRACKING_URI": team_server.uri}
    subprocess.run(["createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow", database],
                   env=env, check=True, timeout=60)
    storage = f"postgresql+psycopg://mlflow:{password.strip()}@127.0.0.1:{port}/{database}"
    trial_args = [f"data.raw_dir={tiny_raw}", f"tracking.experiment={experiment}",
                  "tracking.log_checkpoint=false"]  # tests/team counts the checkpoints stored
    cmd = tiny_search_cmd(tmp_path, "pgtiny", 2, trial_args,
                          f"storage={storage}", f"best_out={tmp_path / 'best.yaml'}")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    stored = optuna.load_study(study_name="pgtiny", storage=storage)  # read back from PostgreSQL
    assert [t.state for t in stored.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    client = MlflowClient(team_server.uri)
    exp = client.get_experiment_by_name(experiment).experiment_id
    (parent,) = client.search_runs(
        [exp], f"tags.`xnorlab.sweep_dir` = '{(tmp_path / 'search').resolve()}'")
    trials = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(r.info.run_name for r in trials) == ["pgtiny-trial0", "pgtiny-trial1"]
    assert {r.info.status for r in trials} == {"FINISHED"}
    for trial in stored.trials:  # each stored value is its MLflow run's validation score
        (run,) = [r for r in trials if r.info.run_name == f"pgtiny-trial{trial.number}"]
        assert trial.value == pytest.approx(run.data.metrics["best_val_acc"])
