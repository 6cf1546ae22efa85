"""`dvc repro` end to end on a copy of the project: download (from a local HTTP server) + train."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # trains models or runs subprocesses

COPY = ["conf", "pipelines", "src", "dvc.yaml", ".dvc/config", ".dvcignore", "README.md"]


def make_project(dest: Path, url: str, digests: dict[str, str]) -> None:
    for item in COPY:
        src = ROOT / item
        (dest / item).parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / item)
    ds_file = dest / "conf/dataset/mnist.yaml"
    ds = yaml.safe_load(ds_file.read_text())
    for spec in ds["files"].values():
        spec["sha256"] = digests[spec["name"]]
    ds["sources"] = [{"kind": "http", "url": f"{url}/{{name}}.gz", "compression": "gzip"}]
    ds_file.write_text(yaml.safe_dump(ds))
    suite = {
        "name": "default",
        "datasets": ["mnist"],
        "seeds": "0,1",
        "export_seed": 1,
        "runs": {
            "mnist-mlp-float": {"dataset": "mnist", "model": "mlp", "quant": "float",
                                "args": "trainer=smoke model.hidden=32"},
        },
        "distill_runs": {
            "mnist-mlp-bnn-distill": {"dataset": "mnist", "model": "mlp", "quant": "bnn",
                                      "teacher": "mnist-mlp-float",
                                      "args": "trainer=smoke model.hidden=32"},
        },
    }
    suite["exports"] = ["mnist-mlp-bnn-distill"]
    (dest / "conf/suite/default.yaml").write_text(yaml.safe_dump(suite))
    bench_file = dest / "conf/benchmark.yaml"
    bench = yaml.safe_load(bench_file.read_text())
    bench.update(batches=[1, 8], threads=[1], repeats=1, min_seconds=0.01,
                 paper_mlp={"enabled": False, "hidden": 8, "depth": 1},
                 peak={"seconds": 0.02, "repeats": 1}, gemm={"m": 8, "n": 64, "k": 128})
    bench_file.write_text(yaml.safe_dump(bench))
    train_bench_file = dest / "conf/train_bench.yaml"
    text = train_bench_file.read_text()
    for key, value in (("steps", 1), ("warmup", 0), ("repeats", 1), ("memory_batches", [8])):
        text = re.sub(rf"(?m)^  {key}: .*$", f"  {key}: {value}", text)
    train_bench_file.write_text(text)


def dvc(project: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("dvc")
    return subprocess.run([str(exe), *args], cwd=project, capture_output=True, text=True, env=env)


def test_dvc_repro_downloads_and_trains(tmp_path, served_tiny_mnist):
    url, digests = served_tiny_mnist
    project = tmp_path / "project"
    make_project(project, url, digests)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    assert dvc(project, "config", "core.no_scm", "true", env=env).returncode == 0

    first = dvc(project, "repro", env=env)
    assert first.returncode == 0, first.stdout[-1500:] + first.stderr[-3000:]
    for stage in ("download@mnist", "train@mnist-mlp-float", "distill@mnist-mlp-bnn-distill",
                  "export@mnist-mlp-bnn-distill", "benchmark", "train_bench"):
        assert f"Running stage '{stage}'" in first.stdout
    packed = json.loads((project / "packed/mnist-mlp-bnn-distill.json").read_text())
    assert packed["exactness"]["exact"] and packed["exactness"]["n_images"] == 100
    bench = json.loads((project / "reports/benchmark.json").read_text())
    engines = {r["engine"] for r in bench["models"]["mnist-mlp-bnn-distill"]["results"]}
    assert engines == {"torch_float32", "packed_fast", "packed_numpy"}
    rows = json.loads((project / "reports/train_bench.json").read_text())["rows"]
    assert rows["mnist-mlp-float"]["lightning_over_gemm"] > 0
    for run in ("mnist-mlp-float", "mnist-mlp-bnn-distill"):
        metrics = json.loads((project / f"metrics/{run}.json").read_text())
        assert metrics["n"] == 2 and set(metrics["per_seed"]) == {"0", "1"}
        assert 0.0 <= metrics["mean"]["test_acc"] <= 1.0
        for seed in (0, 1):
            assert (project / f"models/{run}/seed{seed}/checkpoints/best.ckpt").exists()
    assert packed["checkpoint"].endswith("models/mnist-mlp-bnn-distill/seed1/checkpoints/best.ckpt")

    curve = json.loads((project / "curves/mnist-mlp-float.json").read_text())
    assert [(row["seed"], row["epoch"]) for row in curve] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    shown = dvc(project, "plots", "show", "--json", env=env)
    assert shown.returncode == 0 and "curves/mnist-mlp-float.json" in shown.stdout

    readme = (project / "README.md").read_text()
    table = readme.split("<!-- results:start -->")[1].split("<!-- results:end -->")[0]
    assert "Test error (%)" in table and "| Architecture | Method |" in table
    assert (project / "reports/tables.md").exists()

    again = dvc(project, "repro", env=env)
    # only the machine fingerprint reruns (always_changed); on the same machine it is unchanged,
    # so the benchmark stays cached
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Running stage" not in again.stdout.replace("Running stage 'machine'", "")
    assert "Stage 'benchmark' didn't change" in again.stdout

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("xnorlab").experiment_id],
                              "tags.`xnorlab.kind` = 'train'")
    assert sorted((r.info.run_name, r.data.tags["seed"]) for r in runs) == [
        ("mnist-mlp-bnn-distill", "0"), ("mnist-mlp-bnn-distill", "1"),
        ("mnist-mlp-float", "0"), ("mnist-mlp-float", "1")]
    for student in (r for r in runs if r.info.run_name == "mnist-mlp-bnn-distill"):
        assert student.data.tags["suite"] == "default"
        seed = student.data.tags["seed"]  # each seed's student learns from that seed's teacher
        assert student.data.params["distill.teacher"].endswith(
            f"mnist-mlp-float/seed{seed}/checkpoints/best.ckpt")
