"""The MLflow UI as a new user's browser shows it (headless Chromium, the rendered page's text):
`make ui`'s link opens the runs with the reader's columns, a click on the experiment opens its
training runs, a sweep's jobs sit under their parent, and the report run's tables and plots are
artifacts that open. Screenshots of each page go to reports/ui/ (README)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
from hydra import compose, initialize_config_dir
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT
from tests.team.fixtures import WRITERS
from xnorlab import tracking
from xnorlab.report.build import make_report
from xnorlab.report.config import check_report_config
from xnorlab.team.browser import Browser, chromium
from xnorlab.team.server import free_port

pytestmark = [pytest.mark.ui, pytest.mark.slow]

SHOTS = ROOT / "reports" / "ui"
ML = "workflowType=machine_learning"  # the UI's "Model training" mode (see README)
# The expander button in the run-name cell of the run named %s (link -> its cell -> button).
EXPAND_JS = ("(() => { const a = Array.from(document.querySelectorAll('a'))"
             ".find(e => e.innerText.trim() === %s); const b = a &&"
             " a.parentElement.parentElement.querySelector('button');"
             " if (b) b.click(); return Boolean(b); })()")
GENAI_OVERVIEW = ("Traces 0", "No data available")  # what the issue saw instead of the runs


@pytest.fixture(scope="module")
def browser_bin() -> str:
    """Debian's chromium, installed by scripts/chromium.sh on a fresh machine."""
    return chromium()


@pytest.fixture(scope="module")
def make_ui(tmp_path_factory, browser_bin):
    """`make ui` on a free port over a local SQLite store holding one hand-logged run; the
    UI's base URL, the experiment id and the link `make ui` printed."""
    root = tmp_path_factory.mktemp("ui-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client, exp_id, _ = tracking.open_experiment(
        {"uri": uri, "experiment": "xnorlab", "artifact_root": str(root / "artifacts")})
    with tracking.tracked_run(client, exp_id, "mnist-mlp-bnn", {
            "dataset": "mnist", "model": "mlp", "quant": "bnn", "xnorlab.kind": "train"}) as rid:
        for key, value in {"test_error_pct": 1.92, "model_bytes_1bit": 424_000,
                           "train_seconds": 37.5}.items():
            client.log_metric(rid, key, value)
    port = free_port()
    out = root / "make-ui.log"
    with open(out, "w") as log:
        proc = subprocess.Popen(["make", "-s", "ui", f"UI_PORT={port}", f"UI_STORE={uri}"],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # own process group: stopped whole
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            try:
                if requests.get(f"{base}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        assert proc.poll() is None, f"make ui exited: {out.read_text()[-800:]}"
        link = re.search(r"^Runs: (\S+)", out.read_text(), re.M)
        assert link, f"make ui printed no link: {out.read_text()[-800:]}"
        yield base, exp_id, link.group(1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def test_make_ui_link_opens_the_runs_with_the_readers_columns(make_ui):
    base, exp_id, link = make_ui
    assert link == tracking.runs_url(base, exp_id)
    with Browser(size=(1900, 700)) as page:
        text = page.open(link, ["mnist-mlp-bnn", "1 matching run", "test_error_pct"],
                         SHOTS / "local_runs_view.png")
    assert tracking.VIEW_NAME in text  # the saved view, listed by name under "Views"
    for column in ("dataset", "model", "quant", "test_error_pct", "model_bytes_1bit",
                   "train_seconds", "Duration"):
        assert column in text, column
    assert "1.92" in text and "424000" in text.replace(",", "") and "37.5" in text
    assert not any(s in text for s in GENAI_OVERVIEW)


def test_a_click_on_the_experiment_opens_its_training_runs(make_ui):
    """A new user's path: the experiment list, the "Model training" switch, the experiment."""
    base, _, _ = make_ui
    with Browser() as page:
        page.open(f"{base}/#/experiments", ["xnorlab", "Model training"])
        page.click("Model training", ["Model registry"])  # the switch; the browser keeps it
        text = page.click("xnorlab", ["Run Name", "mnist-mlp-bnn", "1 matching run"],
                          SHOTS / "local_experiment.png")
    assert not any(s in text for s in GENAI_OVERVIEW)


def _report(uri: str, out: Path) -> str:
    """The report stage over the sweep's runs, reading them from the server; its run id."""
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = check_report_config(compose("report", [
            f"tracking.uri={uri}", f"report.out_dir={out}", f"report.benchmark={out}/none.json"]))
    # The jobs are team-s<i> trained with seed i: reported as the suite's runs found on the
    # server, each over the seed it has.
    cfg["suite"] = {"name": "team_bench", "datasets": ["mnist"], "distill_runs": {}, "runs": {}}
    cfg["report"]["include_unlisted"] = True
    result = make_report(cfg)
    assert sorted(r.slot.key for r in result.records) == sorted(
        f"team-s{i}" for i in range(WRITERS))
    assert all(r.finished for r in result.records)  # every job's run was read from the server
    return result.mlflow_run_id


def test_server_ui_shows_sweep_jobs_under_their_parent_and_the_report(
        server_sweep, tmp_path, browser_bin):
    srv = server_sweep.server
    client = MlflowClient(srv.uri)
    exp_id = client.get_experiment_by_name("xnorlab").experiment_id
    report_id = _report(srv.uri, tmp_path / "report")
    runs = {r.info.run_name: r for r in client.search_runs([exp_id])}
    parent = next(n for n, r in runs.items() if r.data.tags.get("xnorlab.kind") == "sweep")

    with Browser(size=(1900, 900)) as page:
        # top level: the sweep parent (its jobs folded under it) and the report run
        text = page.open(tracking.runs_url(srv.uri, exp_id),
                         [parent, "report-team_bench", f"{WRITERS + 2} matching runs"],
                         SHOTS / "server_runs.png")
        assert "team-s0" not in text  # folded: MLflow lists child runs once expanded
        # the "+" beside the parent (a button without text in the run-name cell) unfolds them
        assert page.evaluate(EXPAND_JS % json.dumps(parent)), "no expander beside the parent"
        text = page.wait([f"team-s{i}" for i in range(WRITERS)],
                         SHOTS / "server_runs_expanded.png", what="unfolding the sweep")
        assert text.index(parent) < text.index("team-s0")  # the jobs listed below the parent

        job = runs["team-s0"]
        text = page.open(f"{srv.uri}/#/experiments/{exp_id}/runs/{job.info.run_id}?{ML}",
                         ["team-s0", "Parent run", parent, "test_error_pct"],
                         SHOTS / "server_sweep_job.png")

        art = f"{srv.uri}/#/experiments/{exp_id}/runs/{report_id}/artifacts"
        text = page.open(f"{art}/tables.md?{ML}",
                         ["tables.md", "Table 1: test error", "team-s0"],
                         SHOTS / "server_report_tables.png")
        for name in ("tables.tex", "table1.csv", "report.json", "plots"):
            assert name in text, name
        page.open(f"{art}/plots/accuracy_vs_size.png?{ML}",
                  ["[img plots/accuracy_vs_size.png]"],  # the plot opened as an image
                  SHOTS / "server_report_plot.png")
