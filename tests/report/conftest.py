"""A small MLflow store filled by real smoke training runs (in-process), shared by the report
tests of one session: mlp float, mlp bnn, logreg bnn, kmeans bnn; a distillation run that
fails at start (FAILED); and, logged by hand, runs the report must ignore."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, write_tiny_mnist

SUITE_NAME = "reporttest"

SUITE: dict[str, Any] = {
    "name": SUITE_NAME,
    "datasets": ["mnist"],
    "runs": {
        "mnist-mlp-float": {"dataset": "mnist", "model": "mlp", "quant": "float"},
        "mnist-mlp-bnn": {"dataset": "mnist", "model": "mlp", "quant": "bnn"},
        "mnist-logreg-bnn": {"dataset": "mnist", "model": "logreg", "quant": "bnn"},
        "mnist-kmeans-bnn": {"dataset": "mnist", "model": "kmeans", "quant": "bnn"},
        # listed but never trained in this suite (a FINISHED run of another suite exists)
        "mnist-mlp-xnor": {"dataset": "mnist", "model": "mlp", "quant": "xnor"},
    },
    "distill_runs": {
        # its only run FAILED (the teacher checkpoint does not exist)
        "mnist-mlp-bnn-distill": {"dataset": "mnist", "model": "mlp", "quant": "bnn",
                                  "teacher": "mnist-mlp-float"},
    },
}

TRAINED = {
    "mnist-mlp-float": ["model=mlp", "model.hidden=32", "quant=float"],
    "mnist-mlp-bnn": ["model=mlp", "model.hidden=32", "quant=bnn"],
    "mnist-logreg-bnn": ["model=logreg", "quant=bnn"],
    "mnist-kmeans-bnn": ["model=kmeans", "quant=bnn"],
}


@dataclass
class Store:
    root: Path
    uri: str
    run_ids: dict[str, str]  # run name -> the run the report should pick
    failed_id: str

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.uri)

    def run(self, name: str):
        return self.client.get_run(self.run_ids[name])


def compose_cfg(name: str, overrides: list[str]):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return compose(name, overrides=overrides)


def _train(root: Path, uri: str, name: str, extra: list[str]) -> None:
    from xnorlab.train.config import check_train_config
    from xnorlab.train.run import run

    cfg = check_train_config(compose_cfg("train", [
        "trainer=smoke", f"data.raw_dir={root / 'raw'}", f"tracking.uri={uri}",
        f"tracking.artifact_root={root / 'artifacts'}", "tracking.log_checkpoint=false",
        f"suite.name={SUITE_NAME}", f"run_name={name}", f"out_dir={root / 'models' / name}",
        *extra,
    ]))
    run(cfg)


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Store:
    root = tmp_path_factory.mktemp("report-store")
    write_tiny_mnist(root / "raw")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)

    for name, extra in TRAINED.items():
        _train(root, uri, name, extra)
    with pytest.raises(FileNotFoundError):
        _train(root, uri, "mnist-mlp-bnn-distill", [
            "model=mlp", "model.hidden=32", "quant=bnn", f"distill.teacher={root / 'none.ckpt'}"])

    exp = client.get_experiment_by_name("xnorlab").experiment_id
    runs = {r.info.run_name: r for r in client.search_runs([exp])}
    assert runs["mnist-mlp-bnn-distill"].info.status == "FAILED"

    def fake(name: str, suite: str, quant: str, start: int, metrics: dict[str, float]) -> None:
        run = client.create_run(exp, start_time=start, run_name=name, tags={
            "xnorlab.kind": "train", "suite": suite, "dataset": "mnist",
            "model": name.split("-")[1], "quant": quant})
        client.log_param(run.info.run_id, "distill.teacher", "None")
        for k, v in metrics.items():
            client.log_metric(run.info.run_id, k, v)
        client.set_terminated(run.info.run_id)

    # an older FINISHED run of a configuration: the newer (real) run must win
    fake("mnist-logreg-bnn", SUITE_NAME, "bnn", 1, {"test_error_pct": 99.0, "test_acc": 0.01})
    # a FINISHED run of another suite: must not fill this suite's slot
    fake("mnist-mlp-xnor", "othersuite", "xnor", runs["mnist-mlp-bnn"].info.start_time,
         {"test_error_pct": 42.0, "test_acc": 0.58})

    return Store(root, uri, {n: runs[n].info.run_id for n in TRAINED},
                 runs["mnist-mlp-bnn-distill"].info.run_id)
