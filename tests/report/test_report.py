"""The report stage on a store of real smoke runs: values, dashes, LaTeX, plots, determinism,
benchmark input, the MLflow report run, the README helper and the entry point."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.report.conftest import SUITE, SUITE_NAME, Store, compose_cfg
from xnorlab.report.build import make_report
from xnorlab.report.config import check_report_config
from xnorlab.report.readme import END, START

pytestmark = pytest.mark.slow  # trains models or runs subprocesses

PNG = b"\x89PNG\r\n\x1a\n"


def report_cfg(store: Store, out: Path, *overrides: str, suite=SUITE) -> dict:
    cfg = check_report_config(compose_cfg("report", [
        f"tracking.uri={store.uri}", f"tracking.artifact_root={store.root / 'artifacts'}",
        f"report.out_dir={out}", f"report.benchmark={out / 'no-benchmark.json'}", *overrides,
    ]))
    cfg["suite"] = copy.deepcopy(suite)
    return cfg


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    return {row["run_name"]: row for row in csv.DictReader(io.StringIO(path.read_text()))}


def md_section(md: str, title: str) -> str:
    return md.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def md_row(section: str, *cells: str) -> str:
    """The Markdown table line whose leading cells are `cells`."""
    prefix = "| " + " | ".join(cells) + " |"
    (line,) = [ln for ln in section.splitlines() if ln.startswith(prefix)]
    return line


def note_text(section: str, mark: str) -> str:
    return next(ln for ln in section.splitlines() if ln.startswith(f"- [{mark}]"))


@pytest.fixture(scope="module")
def plain(store, tmp_path_factory):
    """One report without a benchmark."""
    out = tmp_path_factory.mktemp("plain") / "reports"
    return make_report(report_cfg(store, out)), out


def test_tables_hold_the_logged_metrics_of_the_latest_finished_runs(store, plain):
    result, out = plain
    t1, t2, t3 = (read_csv(out / f"table{i}.csv") for i in (1, 2, 3))
    assert set(t1) == set(SUITE["runs"]) | set(SUITE["distill_runs"])
    for name, run_id in store.run_ids.items():
        m = store.run(name).data.metrics
        assert t1[name]["run_id"] == run_id and t1[name]["status"] == "FINISHED"
        assert float(t1[name]["test_error_pct"]) == m["test_error_pct"]
        for key in ("params_total", "model_bytes_fp32", "peak_rss_mb"):
            assert float(t2[name][key]) == m[key], (name, key)
    bnn = store.run("mnist-mlp-bnn").data.metrics
    flt = store.run("mnist-mlp-float").data.metrics
    assert float(t2["mnist-mlp-bnn"]["model_bytes_1bit"]) == bnn["model_bytes_1bit"]
    assert float(t2["mnist-mlp-bnn"]["epoch_seconds_mean"]) == bnn["epoch_seconds_mean"]
    assert t2["mnist-mlp-float"]["model_bytes_1bit"] == ""  # float runs are stored at 32 bits
    # Table 3: the bnn run against its float baseline
    row = t3["mnist-mlp-bnn"]
    assert row["baseline_run_id"] == store.run_ids["mnist-mlp-float"]
    assert float(row["accuracy_lost_points"]) == pytest.approx(
        100 * (flt["test_acc"] - bnn["test_acc"]))
    assert float(row["memory_saved_x"]) == pytest.approx(
        flt["model_bytes_fp32"] / bnn["model_bytes_1bit"])
    assert set(t3) == {"mnist-mlp-bnn", "mnist-logreg-bnn", "mnist-kmeans-bnn",
                       "mnist-mlp-xnor", "mnist-mlp-bnn-distill"}

    md = (out / "tables.md").read_text()
    table1 = md_section(md, "Table 1")
    assert "| Architecture | Method | MNIST | MNIST (paper) |" in table1
    labels = [ln.split(" | ")[1] for ln in table1.splitlines() if ln.startswith("| ")][2:]
    assert labels == ["BNN det.", "float (32-bit)", "BNN det.", "XNOR-Net",
                      "BNN det., distilled", "BNN det."]  # LogReg, MLP x4, K-means
    # our value with its short run id, the published figures beside it, labelled
    row = md_row(table1, "", "BNN det.")
    assert f"{bnn['test_error_pct']:.2f} `{store.run_ids['mnist-mlp-bnn'][:8]}`" in row
    assert "0.96 / 1.40 [" in row
    assert "the paper's own MLP" in note_text(table1, row.rsplit("[", 1)[1].split("]")[0])
    # report.json: the same numbers, for `dvc metrics`
    data = json.loads((out / "report.json").read_text())
    assert data["runs"]["mnist-mlp-bnn"]["test_error_pct"] == bnn["test_error_pct"]
    assert data["runs"]["mnist-mlp-xnor"]["test_error_pct"] is None
    assert data["tradeoff"]["mnist-mlp-bnn"]["memory_saved_x"] == float(
        t3["mnist-mlp-bnn"]["memory_saved_x"])
    assert all(isinstance(v, int | float | None) for r in data["runs"].values()
               for v in r.values())


def test_missing_and_failed_runs_show_a_dash_and_a_note(store, plain):
    result, out = plain
    md = (out / "tables.md").read_text()
    table1 = md_section(md, "Table 1")
    never = md_row(table1, "", "XNOR-Net")  # only another suite's run exists
    assert "42.00" not in md
    mark = re.search(r"— \[(\d+)\]", never).group(1)
    assert "Not trained yet: no run of this configuration" in note_text(table1, mark)
    failed = md_row(table1, "", "BNN det., distilled")
    mark = re.search(r"— \[(\d+)\]", failed).group(1)
    assert f"({store.failed_id[:8]}) is FAILED" in note_text(table1, mark)
    # Table 3: a binarized run without a float baseline in the suite
    table3 = md_section(md, "Table 3")
    logreg = md_row(table3, "LogReg", "MNIST", "BNN det.")
    mark = re.search(r"— \[(\d+)\]", logreg).group(1)
    assert "No float run of LogReg on MNIST" in note_text(table3, mark)
    # speed columns without a benchmark: a dash and a note
    table2 = md_section(md, "Table 2")
    assert "no-benchmark.json`: run the benchmark stage" in table2
    t1 = read_csv(out / "table1.csv")
    assert t1["mnist-mlp-xnor"]["status"] == "missing" and t1["mnist-mlp-xnor"]["run_id"] == ""
    assert t1["mnist-mlp-xnor"]["test_error_pct"] == ""


def check_latex(tex: str) -> None:
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{(\w+)\}", tex):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack.pop() == env, env
    assert not stack
    assert tex.count("{") - tex.count("\\{") == tex.count("}") - tex.count("\\}")
    body_lines = [ln for ln in tex.splitlines() if not ln.lstrip().startswith("%")]
    specs = re.findall(r"\\begin\{tabular\}\{(\w+)\}", tex)
    assert len(specs) == 3 and all("toprule" in t for t in tex.split("\\begin{tabular}")[1:])
    table = 0
    for line in body_lines:
        if "\\begin{tabular}" in line:
            table += 1
            continue
        stripped = re.sub(r"\\[_%&#$]|\$\\times\$|\$\\rightarrow\$|\$-\$", "", line)
        stripped = re.sub(r"\{%$", "{", stripped)  # an end-of-line comment, on purpose
        assert not re.search(r"[_%#$]", stripped), line
        if line.rstrip().endswith("\\\\"):  # a table row: one & per column boundary
            assert stripped.count("&") == len(specs[table - 1]) - 1, line


def test_latex_is_well_formed_and_escaped(plain):
    _, out = plain
    tex = (out / "tables.tex").read_text()
    check_latex(tex)
    assert "\\texttt{epoch\\_seconds\\_mean}" in tex  # a note naming a metric, escaped
    assert "Test error (\\%)" in tex and "\\toprule" in tex and "\\bottomrule" in tex
    assert "---\\textsuperscript{" in tex  # missing runs: em dash + note mark


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_compiles(plain, tmp_path):
    _, out = plain
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\\usepackage{booktabs,graphicx}\n"
                   f"\\begin{{document}}\\input{{{out / 'tables.tex'}}}\\end{{document}}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_plots_are_written(store, plain):
    _, out = plain
    plots = out / "plots"
    names = sorted(p.name for p in plots.glob("*.png"))
    assert names == ["accuracy_vs_size.png", "curves_logreg.png", "curves_mlp.png",
                     "hardest_mnist-kmeans-bnn.png"]
    for p in plots.glob("*.png"):
        assert p.read_bytes().startswith(PNG) and p.stat().st_size > 2000
    hardest = Path(store.client.download_artifacts(
        store.run_ids["mnist-kmeans-bnn"], "hardest.png", str(out.parent)))
    assert (plots / "hardest_mnist-kmeans-bnn.png").read_bytes() == hardest.read_bytes()
    md = (out / "tables.md").read_text()
    assert "](plots/curves_mlp.png)" in md and "No speedup plot" in md


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_rerun_is_byte_identical_and_logs_one_report_run(store, tmp_path):
    out = tmp_path / "reports"
    first = make_report(report_cfg(store, out))
    before = snapshot(out)
    (out / "plots" / "stale.png").write_bytes(PNG)  # a plot an earlier report made
    second = make_report(report_cfg(store, out))
    assert snapshot(out) == before
    assert first.digest == second.digest
    assert second.mlflow_run_id == first.mlflow_run_id and not second.logged_new_run

    run = store.client.get_run(first.mlflow_run_id)
    assert run.data.tags["xnorlab.kind"] == "report" and run.info.status == "FINISHED"
    assert run.data.tags["suite"] == SUITE_NAME
    assert run.data.tags["source.mnist-mlp-bnn"] == store.run_ids["mnist-mlp-bnn"]
    logged = {a.path for a in store.client.list_artifacts(first.mlflow_run_id)}
    assert {"tables.md", "tables.tex", "table1.csv", "table2.csv", "table3.csv", "report.json",
            "plots"} <= logged
    plots = {a.path for a in store.client.list_artifacts(first.mlflow_run_id, "plots")}
    assert "plots/accuracy_vs_size.png" in plots


def write_benchmark(path: Path, bnn_run_id: str) -> dict:
    def results(float_ips: list[float], packed: list[float], numpy: list[float]) -> list[dict]:
        out = []
        for threads, scale in ((1, 1.0), (2, 1.8)):
            for engine, ips in (("torch_float32", float_ips), ("packed_fast", packed),
                                ("packed_numpy", numpy)):
                for batch, v in zip((1, 64), ips, strict=True):
                    out.append({"engine": engine, "threads": threads, "batch": batch,
                                "images_per_s_median": v * scale,
                                "images_per_s_best": v * scale * 1.1,
                                "latency_ms_median": 1000 / (v * scale)})
        return out

    data = {
        "machine": {"cpu": "Test CPU @ 1GHz", "flags": ["avx2"], "threads": [1, 2],
                    "versions": {"numpy": "2"}},
        "peak": {"binary_ops_per_s_1core": 1e11},
        "models": {
            "mnist-mlp-bnn": {
                "packed_bytes": 4100, "float_checkpoint_bytes": 120000, "size_ratio": 29.3,
                "exact": {"n_images": 64, "mismatched_predictions": 0},
                "results": results([1000.0, 20000.0], [5000.0, 300000.0], [800.0, 9000.0]),
                "train_run_id": bnn_run_id},
            "mnist-logreg-bnn": {
                "packed_bytes": 1000, "float_checkpoint_bytes": 32000, "size_ratio": 32.0,
                "exact": {"n_images": 64, "mismatched_predictions": 2},
                "results": results([4000.0, 90000.0], [8000.0, 400000.0], [900.0, 1e4]),
                "train_run_id": "0" * 32},
            # a model the benchmark measures that is no run of the suite (plot only)
            "paper_mlp": {
                "packed_bytes": 1600000, "float_checkpoint_bytes": 51000000, "size_ratio": 31.9,
                "results": results([50.0, 400.0], [2000.0, 30000.0], [10.0, 20.0])},
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return data


def test_benchmark_feeds_the_speed_columns(store, tmp_path):
    out = tmp_path / "reports"
    bench = out / "benchmark.json"
    write_benchmark(bench, store.run_ids["mnist-mlp-bnn"])
    make_report(report_cfg(store, out, f"report.benchmark={bench}", "report.log_to_mlflow=false"))
    t2, t3 = read_csv(out / "table2.csv"), read_csv(out / "table3.csv")
    row = t2["mnist-mlp-bnn"]
    assert row["bench_threads"] == "1" and row["packed_bytes"] == "4100"
    assert float(row["float_images_per_s_b64"]) == 20000.0
    assert float(row["packed_images_per_s_b64"]) == 300000.0  # packed_fast preferred
    assert float(row["speedup_b1"]) == 5.0 and float(t3["mnist-mlp-bnn"]["speedup_b64"]) == 15.0
    assert t2["mnist-mlp-float"]["speedup_b1"] == ""  # float runs have no packed engine

    md = (out / "tables.md").read_text()
    table2 = md_section(md, "Table 2")
    assert "img/s b=1" in table2 and "img/s b=64" in table2
    assert "20,000 → 300,000 (15.0×)" in md_row(table2, "", "MNIST", "BNN det.")
    assert "Test CPU @ 1GHz" in table2 and "at 1 thread on" in table2
    assert "disagreed with PyTorch on 2 of 64 images" in table2
    assert "comes from run 00000000" in table2  # the benchmarked model is another run's
    xnor = md_row(table2, "", "MNIST", "XNOR-Net")
    assert xnor.endswith("— [1] | — [1] |") or re.search(r"— \[\d+\] \| — \[\d+\] \|$", xnor)
    table3 = md_section(md, "Table 3")
    assert "| 15.0× |" in md_row(table3, "MLP", "MNIST", "BNN det.")
    assert "paper_mlp" not in md  # not a run of the suite: in the speedup plot only
    assert (out / "plots" / "speedup_by_batch.png").read_bytes().startswith(PNG)
    check_latex((out / "tables.tex").read_text())

    # another thread count on request
    make_report(report_cfg(store, out, f"report.benchmark={bench}", "report.bench_threads=2",
                           "report.log_to_mlflow=false", "report.plots=false"))
    assert float(read_csv(out / "table2.csv")["mnist-mlp-bnn"]["float_images_per_s_b1"]) == 1800


def test_readme_is_rewritten_only_between_the_markers(store, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nintro\n\n{START}\nold table\n{END}\n\n## After\ntext\n")
    out = tmp_path / "reports"
    make_report(report_cfg(store, out, "report.update_readme=true", f"report.readme={readme}",
                           "report.log_to_mlflow=false", "report.plots=false"))
    text = readme.read_text()
    assert text.startswith("# Title\n\nintro\n\n" + START + "\n")
    assert text.endswith(END + "\n\n## After\ntext\n") and "old table" not in text
    inside = text.split(START)[1].split(END)[0]
    assert "| Architecture | Method | MNIST | MNIST (paper) |" in inside
    assert store.run_ids["mnist-mlp-bnn"][:8] not in inside  # run ids stay in the report
    before = readme.read_bytes()
    make_report(report_cfg(store, out, "report.update_readme=true", f"report.readme={readme}",
                           "report.log_to_mlflow=false", "report.plots=false"))
    assert readme.read_bytes() == before


def test_entry_point_and_config_errors(store, tmp_path):
    from xnorlab.schema import ConfigError

    with pytest.raises(ConfigError, match="outdir"):
        check_report_config(compose_cfg("report", ["+report.outdir=x"]))
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    out = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, "pipelines/report.py", f"tracking.uri={store.uri}",
         f"tracking.artifact_root={store.root / 'artifacts'}", f"report.out_dir={out}",
         f"report.benchmark={out / 'none.json'}", "report.log_to_mlflow=false",
         "report.plots=false", "report.update_readme=true", f"report.readme={readme}",
         f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=ROOT, capture_output=True, text=True,
    )
    # the default suite's runs are not in this store: all dashes, but the tables are written
    assert (out / "tables.md").exists() and "— [" in (out / "tables.md").read_text()
    assert proc.returncode != 0 and "results:start" in proc.stderr
    assert readme.read_text() == "no markers\n"


def test_unlisted_runs_of_the_suite_on_request(store, tmp_path):
    only_float = {**SUITE, "runs": {"mnist-mlp-float": SUITE["runs"]["mnist-mlp-float"]},
                  "distill_runs": {}}
    quiet = ("report.log_to_mlflow=false", "report.plots=false")
    listed = make_report(report_cfg(store, tmp_path / "a", *quiet, suite=only_float))
    assert [r.slot.key for r in listed.records] == ["mnist-mlp-float"]
    every = make_report(report_cfg(store, tmp_path / "b", *quiet, "report.include_unlisted=true",
                                   suite=only_float))
    by_key = {r.slot.key: r for r in every.records}
    # the other suite's xnor run stays out; the failed distillation run is there, as a dash
    assert set(by_key) == set(store.run_ids) | {"mnist-mlp-bnn-distill"}
    assert by_key["mnist-mlp-bnn-distill"].slot.distilled
    assert not by_key["mnist-mlp-bnn-distill"].finished
    assert by_key["mnist-logreg-bnn"].run_id == store.run_ids["mnist-logreg-bnn"]
