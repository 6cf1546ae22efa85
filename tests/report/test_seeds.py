"""The report over seeds, on runs logged by hand: mean +- std (n) per cell, a paired 95%
interval for each method's gap to its float baseline, budgets in the caption, missing seeds."""

from __future__ import annotations

import copy
import math

import pytest
from mlflow.tracking import MlflowClient

from tests.report.test_report import md_section, read_csv, report_cfg
from xnorlab.report.build import make_report
from xnorlab.stats import mean_std, paired_interval, t975

SUITE = {
    "name": "seedtest", "datasets": ["mnist"], "seeds": "0,1,2",
    "runs": {
        "mnist-mlp-float": {"dataset": "mnist", "model": "mlp", "quant": "float"},
        "mnist-mlp-bnn": {"dataset": "mnist", "model": "mlp", "quant": "bnn"},
        "mnist-cnn-float": {"dataset": "mnist", "model": "cnn", "quant": "float"},
        "mnist-cnn-bnn": {"dataset": "mnist", "model": "cnn", "quant": "bnn"},
    },
    "distill_runs": {},
}
# test accuracy per seed; mnist-cnn-bnn's seed 2 FAILED, and its CNN trains longer (unequal)
ACC = {
    "mnist-mlp-float": {0: 0.985, 1: 0.983, 2: 0.986},
    "mnist-mlp-bnn": {0: 0.975, 1: 0.979, 2: 0.972},
    "mnist-cnn-float": {0: 0.991, 1: 0.990, 2: 0.992},
    "mnist-cnn-bnn": {0: 0.986, 1: 0.984},
}


class FakeStore:
    def __init__(self, root):
        self.root, self.uri = root, f"sqlite:///{root / 'mlflow.db'}"
        self.client = MlflowClient(self.uri)
        self.exp = self.client.create_experiment("xnorlab", str(root / "artifacts"))

    def log(self, name: str, seed: int, acc: float | None, epochs: int) -> str:
        model, quant = name.split("-")[1:3]
        run = self.client.create_run(self.exp, run_name=name, tags={
            "xnorlab.kind": "train", "suite": SUITE["name"], "dataset": "mnist",
            "model": model, "quant": quant, "seed": str(seed)})
        rid = run.info.run_id
        for key, value in {"distill.teacher": "None", "seed": seed, "trainer.max_epochs": epochs,
                           "data.batch_size": 100, "optim.lr": 0.003,
                           "optim.lr_end": 0.0003}.items():
            self.client.log_param(rid, key, value)
        if acc is None:
            self.client.set_terminated(rid, status="FAILED")
            return rid
        self.client.log_metric(rid, "test_acc", acc)
        self.client.log_metric(rid, "test_error_pct", 100 * (1 - acc))
        self.client.set_terminated(rid)
        return rid


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    store = FakeStore(tmp_path_factory.mktemp("seed-store"))
    for name, accs in ACC.items():
        epochs = 5 if name == "mnist-cnn-bnn" else 3
        for seed, acc in accs.items():
            store.log(name, seed, acc, epochs)
    store.log("mnist-cnn-bnn", 2, None, 5)
    out = store.root / "reports"
    make_report(report_cfg(store, out, suite=copy.deepcopy(SUITE)))
    return store, out


def test_cells_are_mean_std_and_n_over_seeds(seeded):
    _, out = seeded
    t1 = read_csv(out / "table1.csv")
    for name, accs in ACC.items():
        mean, sd = mean_std([100 * (1 - a) for a in accs.values()])
        assert float(t1[name]["test_error_pct"]) == pytest.approx(mean)
        assert float(t1[name]["test_error_pct_std"]) == pytest.approx(sd)
        assert int(t1[name]["n_seeds"]) == len(accs)
        assert t1[name]["seeds"] == " ".join(map(str, accs))
        assert len(t1[name]["seed_run_ids"].split()) == len(accs)
    assert t1["mnist-mlp-bnn"]["epochs"] == "3" and t1["mnist-cnn-bnn"]["epochs"] == "5"
    table1 = md_section((out / "tables.md").read_text(), "Table 1")
    mean, sd = mean_std([100 * (1 - a) for a in ACC["mnist-mlp-bnn"].values()])
    bnn_rows = [ln for ln in table1.splitlines() if ln.startswith("|  | BNN det. |")]
    assert any(f"| {mean:.2f} ± {sd:.2f} (3) `" in ln for ln in bnn_rows), bnn_rows


def test_missing_seeds_and_unequal_budgets_are_said(seeded):
    _, out = seeded
    table1 = md_section((out / "tables.md").read_text(), "Table 1")
    assert "`mnist-cnn-bnn`: 2 of 3 seeds finished (no FINISHED run for seed 2)" in table1
    assert "MLP on MNIST: 3 epochs, batch 100" in table1 and "for every method" in table1
    assert "CNN on MNIST (UNEQUAL budgets)" in table1


def test_gap_to_float_has_a_paired_interval(seeded):
    _, out = seeded
    row = read_csv(out / "table3.csv")["mnist-mlp-bnn"]
    diffs = [100 * (ACC["mnist-mlp-float"][s] - ACC["mnist-mlp-bnn"][s]) for s in range(3)]
    mean, sd = mean_std(diffs)
    assert float(row["accuracy_lost_points"]) == pytest.approx(mean)
    assert float(row["accuracy_lost_ci95_half_width"]) == pytest.approx(
        t975(2) * sd / math.sqrt(3))
    # only the seeds both finished are paired: the CNN's 2
    cnn = read_csv(out / "table3.csv")["mnist-cnn-bnn"]
    pair = paired_interval({s: 100 * a for s, a in ACC["mnist-cnn-float"].items()},
                           {s: 100 * a for s, a in ACC["mnist-cnn-bnn"].items()})
    assert pair is not None and pair[2] == 2
    assert float(cnn["accuracy_lost_points"]) == pytest.approx(pair[0])
    assert float(cnn["accuracy_lost_ci95_half_width"]) == pytest.approx(pair[1])


def test_stats_helpers():
    assert mean_std([1.0]) == (1.0, 0.0)
    assert mean_std([1.0, 3.0]) == (2.0, math.sqrt(2.0))
    assert t975(1) == 12.706 and t975(1000) == 1.96
    assert paired_interval({0: 1.0}, {0: 2.0}) is None
    with pytest.raises(ValueError):
        mean_std([])
