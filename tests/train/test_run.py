"""End-to-end training runs on tiny data: metrics, MLflow records, resume, sweeps, typos."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT
from xnorlab.schema import ConfigError
from xnorlab.train.config import check_train_config
from xnorlab.train.run import run

pytestmark = pytest.mark.slow  # trains models or runs subprocesses


def compose_train(overrides: list[str]):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


def smoke_overrides(tmp_path: Path, raw: Path, uri: str, *extra: str) -> list[str]:
    return [
        "trainer=smoke", f"data.raw_dir={raw}", f"tracking.uri={uri}",
        f"tracking.artifact_root={tmp_path / 'artifacts'}", *extra,
    ]


def runs_of(uri: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("xnorlab")
    return client.search_runs([exp.experiment_id]) if exp else []


def test_smoke_run_writes_metrics_and_logs_to_mlflow(tmp_path, tiny_raw, mlflow_uri):
    cfg = check_train_config(compose_train(smoke_overrides(
        tmp_path, tiny_raw, mlflow_uri, "model=mlp", "model.hidden=64", "quant=bnn",
        f"out_dir={tmp_path / 'out'}", f"metrics_file={tmp_path / 'm.json'}",
    )))
    metrics = run(cfg)
    summary = json.loads((tmp_path / "m.json").read_text())  # every seed of the run
    assert summary["per_seed"] == {"0": metrics} and summary["n"] == 1
    assert summary["mean"]["test_acc"] == metrics["test_acc"]
    for name in ("config.yaml", "history.json", "curves.png", "confusion.png"):
        assert (tmp_path / "out" / name).exists(), name
    (logged,) = runs_of(mlflow_uri)
    assert logged.info.run_name == "mnist-mlp-bnn" and logged.info.status == "FINISHED"
    assert logged.data.metrics["test_acc"] == pytest.approx(metrics["test_acc"])
    assert logged.data.params["model.hidden"] == "64"
    assert logged.data.tags["quant"] == "bnn" and "machine.cpu" in logged.data.tags
    history = MlflowClient(mlflow_uri).get_metric_history(logged.info.run_id, "val_acc")
    assert [m.step for m in history] == [1, 2]
    artifacts = {a.path for a in MlflowClient(mlflow_uri).list_artifacts(logged.info.run_id)}
    assert {"metrics.json", "confusion.png", "curves.png", "checkpoints"} <= artifacts
    # binary kernels count at 1 bit, so the binarized model is much smaller
    assert metrics["model_bytes_1bit"] < metrics["model_bytes_fp32"] / 10


def test_kmeans_run_logs_hardest_examples_and_exports(tmp_path, tiny_raw, mlflow_uri, capsys):
    out = tmp_path / "models" / "km"
    cfg = check_train_config(compose_train(smoke_overrides(
        tmp_path, tiny_raw, mlflow_uri, "model=kmeans", "quant=bnn", f"out_dir={out}",
    )))
    metrics = run(cfg)
    assert (out / "hardest.png").exists()
    assert 0 <= metrics["test_acc"] <= 1 and metrics["compression_ratio"] == 32
    # the fitted model is the run's checkpoint; the export stage packs it and checks it
    spec = importlib.util.spec_from_file_location("export_stage", ROOT / "pipelines/export.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    stage.export({"run": "km", "seed": None, "check": {"limit": None, "chunk": 500},
                  "paths": {"models_dir": str(tmp_path / "models"),
                            "packed_dir": str(tmp_path / "packed")}})
    check = json.loads((tmp_path / "packed" / "km.json").read_text())
    assert check["exactness"]["exact"] and check["exactness"]["n_images"] == 100
    assert check["array_size_ratio"] > 25  # the file also carries the run's config
    # xnorlab predict on it: the run's own test accuracy
    from xnorlab.cli import main

    assert main(["predict", str(tmp_path / "packed" / "km.xnor"),
                 str(tiny_raw / "mnist" / "t10k-images-idx3-ubyte"),
                 "--labels", str(tiny_raw / "mnist" / "t10k-labels-idx1-ubyte"), "--quiet"]) == 0
    assert f"accuracy {metrics['test_acc']:.4f} on 100 images" in capsys.readouterr().err


def test_kmeans_starts_from_the_runs_seed(tmp_path, tiny_raw, mlflow_uri, monkeypatch):
    from xnorlab.models import kmeans

    seeds, fit = [], kmeans.KMeans.fit

    def recording_fit(self, x):
        seeds.append(self.seed)
        return fit(self, x)

    monkeypatch.setattr(kmeans.KMeans, "fit", recording_fit)
    for seed in (0, 2):
        run(check_train_config(compose_train(smoke_overrides(
            tmp_path, tiny_raw, mlflow_uri, "model=kmeans", "quant=bnn", f"seed={seed}",
            f"out_dir={tmp_path / str(seed)}"))))
    run(check_train_config(compose_train(smoke_overrides(
        tmp_path, tiny_raw, mlflow_uri, "model=kmeans", "model.seed=5", "seed=2",
        f"out_dir={tmp_path / 'fixed'}"))))
    assert seeds == [0, 2, 5]  # the model's own seed, when set, wins


@pytest.mark.parametrize("quant", ["xnor", "bc_stoch"])
def test_vit_run_exports_a_graph_and_predicts(quant, tmp_path, tiny_raw, mlflow_uri, capsys):
    out = tmp_path / "models" / "vit"
    cfg = check_train_config(compose_train(smoke_overrides(
        tmp_path, tiny_raw, mlflow_uri, "model=vit", f"quant={quant}", "model.depth=1",
        "model.patch_size=7", f"out_dir={out}",
    )))
    metrics = run(cfg)
    spec = importlib.util.spec_from_file_location("export_stage", ROOT / "pipelines/export.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    stage.export({"run": "vit", "seed": None, "check": {"limit": None, "chunk": 40},
                  "paths": {"models_dir": str(tmp_path / "models"),
                            "packed_dir": str(tmp_path / "packed")}})
    check = json.loads((tmp_path / "packed" / "vit.json").read_text())
    ex = check["exactness"]
    assert check["format_version"] == 2 and ex["exact"] and ex["n_images"] == 100
    assert ex["mismatched_predictions"] == len(ex["prediction_mismatches"])
    # BinaryConnect: real activations, every bc_linear output checked within the tolerance
    assert (ex["real_output_values"] > 0) == quant.startswith("bc")
    assert ex["real_outputs_outside_tolerance"] == 0
    assert check["binary_weight_ratio"] > 20  # 64 +-1 weights per uint64 word
    from xnorlab.cli import main

    assert main(["predict", str(tmp_path / "packed" / "vit.xnor"),
                 str(tiny_raw / "mnist" / "t10k-images-idx3-ubyte"),
                 "--labels", str(tiny_raw / "mnist" / "t10k-labels-idx1-ubyte"), "--quiet"]) == 0
    assert "on 100 images" in capsys.readouterr().err and 0 <= metrics["test_acc"] <= 1


def test_time_limit_stops_after_a_whole_epoch_and_still_measures(tmp_path, tiny_raw, mlflow_uri):
    cfg = check_train_config(compose_train(smoke_overrides(
        tmp_path, tiny_raw, mlflow_uri, "model=mlp", "model.hidden=32", "quant=bnn",
        "trainer.max_epochs=5", "trainer.max_minutes=1e-6", f"out_dir={tmp_path / 'out'}",
    )))
    metrics = run(cfg)
    assert metrics["epochs"] == 1 and 0 <= metrics["test_acc"] <= 1
    (row,) = json.loads((tmp_path / "out" / "history.json").read_text())
    assert "val_acc" in row
    # the schedule still spans max_epochs: after one of five epochs the LR has not hit lr_end
    assert row["lr"] > cfg["optim"]["lr_end"] * 2
    with pytest.raises(ConfigError, match="max_minutes"):
        check_train_config(compose_train(["trainer.max_minutes=0"]))


def test_misspelt_key_and_unknown_choice_fail_clearly(tmp_path):
    with pytest.raises(ConfigError, match="hiden"):
        check_train_config(compose_train(["+model.hiden=3"]))
    with pytest.raises(ConfigError, match="optim.loss"):
        check_train_config(compose_train(["optim.loss=hinge"]))
    proc = subprocess.run(
        [sys.executable, "pipelines/train.py", "model=mpl"], cwd=ROOT, capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "Could not find 'model/mpl'" in proc.stderr and "mlp" in proc.stderr


def train_cmd(tmp_path: Path, raw: Path, uri: str, *extra: str) -> list[str]:
    return [sys.executable, "pipelines/train.py",
            *smoke_overrides(tmp_path, raw, uri, *extra),
            f"hydra.run.dir={tmp_path / 'hydra'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]


def test_killed_run_resumes_from_last_checkpoint(tmp_path, mlflow_uri):
    from tests.conftest import write_tiny_mnist

    write_tiny_mnist(tmp_path / "raw", n_train=3000)
    out = tmp_path / "out"
    cmd = train_cmd(tmp_path, tmp_path / "raw", mlflow_uri, "model=mlp", "model.hidden=512",
                    "quant=bnn", "trainer.max_epochs=4", "data.train_limit=null",
                    f"out_dir={out}")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    history, last = out / "history.json", out / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if last.exists():
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    epochs_before = len(json.loads(history.read_text()))
    assert epochs_before < 4, "the run finished before it could be killed; make epochs longer"

    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming from" in done.stdout + done.stderr
    assert [h["epoch"] for h in json.loads(history.read_text())] == [1, 2, 3, 4]
    (logged,) = runs_of(mlflow_uri)  # the same MLflow run, continued
    assert logged.info.status == "FINISHED"
    steps = MlflowClient(mlflow_uri).get_metric_history(logged.info.run_id, "val_acc")
    assert sorted({m.step for m in steps}) == [1, 2, 3, 4]


def test_parallel_multirun_writes_child_runs_under_one_parent(tmp_path, tiny_raw, mlflow_uri):
    cmd = train_cmd(tmp_path, tiny_raw, mlflow_uri, "model=logreg", "trainer.max_epochs=1",
                    f"out_dir={tmp_path}/models/${{run_name}}")
    cmd.insert(2, "-m")
    # two jobs side by side, opening a fresh store at the same time
    cmd += ["quant=float,bnn", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = runs_of(mlflow_uri)
    parents = [r for r in runs if r.data.tags.get("xnorlab.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("xnorlab.kind") == "train"]
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert sorted(c.info.run_name for c in children) == ["mnist-logreg-bnn", "mnist-logreg-float"]


def test_a_seed_sweep_trains_each_seed_as_it_would_alone(tmp_path, tiny_raw, mlflow_uri):
    """The suite's form: `-m seed=0,1` in one process, a folder and an MLflow run per seed
    under one parent, one summary file; seed 1 in the sweep equals seed 1 trained alone."""
    common = ["model=mlp", "model.hidden=32", "quant=bnn_stoch", "trainer.max_epochs=1",
              f"metrics_file={tmp_path}/m.json", f"history_file={tmp_path}/h.json"]
    sweep = train_cmd(tmp_path, tiny_raw, mlflow_uri, *common,
                      f"out_dir={tmp_path}/models/seed${{seed}}", "seed=0,1")
    sweep.insert(2, "-m")
    proc = subprocess.run(sweep, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "m.json").read_text())
    assert summary["n"] == 2 and summary["seeds"] == [0, 1]
    accs = [summary["per_seed"][s]["test_acc"] for s in ("0", "1")]
    assert summary["mean"]["test_acc"] == pytest.approx(sum(accs) / 2)
    assert {r["seed"] for r in json.loads((tmp_path / "h.json").read_text())} == {0, 1}
    children = [r for r in runs_of(mlflow_uri) if r.data.tags.get("xnorlab.kind") == "train"]
    assert sorted(r.data.tags["seed"] for r in children) == ["0", "1"]
    assert len({r.data.tags["mlflow.parentRunId"] for r in children}) == 1

    alone = check_train_config(compose_train(smoke_overrides(
        tmp_path, tiny_raw, mlflow_uri, *common[:4], "seed=1", f"out_dir={tmp_path / 'alone'}")))
    metrics = run(alone)
    for key in ("test_acc", "best_val_acc", "train_mem_saved_bytes"):
        assert metrics[key] == summary["per_seed"]["1"][key], key


def test_rerunning_a_finished_run_retrains_and_keeps_the_old_one(tmp_path, tiny_raw, mlflow_uri):
    out = tmp_path / "models" / "run"
    cfg = check_train_config(compose_train(smoke_overrides(
        tmp_path, tiny_raw, mlflow_uri, "model=logreg", "trainer.max_epochs=1", f"out_dir={out}",
    )))
    run(cfg)
    run(cfg)
    assert len(runs_of(mlflow_uri)) == 2  # a second MLflow run, not a resumed no-op
    (aside,) = (tmp_path / "models" / ".replaced").iterdir()
    assert (aside / "metrics.json").exists() and (out / "metrics.json").exists()


def test_bad_data_is_one_named_error_not_a_traceback(tmp_path, tiny_raw, mlflow_uri):
    # Regression (fault harness): a config whose val_size exceeds the data, or a torn IDX file,
    # ended the train stage in a traceback from the data module.
    from xnorlab.train.run import DataError

    cfg = check_train_config(compose_train(smoke_overrides(
        tmp_path, tiny_raw, mlflow_uri, "data.val_size=100000", f"out_dir={tmp_path / 'o'}")))
    with pytest.raises(DataError, match="val_size=100000"):
        run(cfg)
    images = tiny_raw / "mnist" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    cfg = check_train_config(compose_train(smoke_overrides(
        tmp_path, tiny_raw, mlflow_uri, f"out_dir={tmp_path / 'o'}")))
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        run(cfg)
