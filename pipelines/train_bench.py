"""DVC stage `train_bench`: training epoch time vs its fp32 GEMM bound, and training memory.

    python pipelines/train_bench.py
    python pipelines/train_bench.py bench.only=[mnist-mlp-float,mnist-mlp-bnn] bench.repeats=2

Writes reports/train_bench.json (DVC metrics) and logs it to MLflow.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from xnorlab import tracking
from xnorlab.bench.train_bench import bench_cases, run_train_bench
from xnorlab.entry import entry_point, require_keys
from xnorlab.io import cpu_info, write_json

log = logging.getLogger("xnorlab.train_bench")
CONF = Path(__file__).resolve().parents[1] / "conf"


@entry_point("train_bench")
def main(full: DictConfig) -> None:
    require_keys(full, "suite.name", "suite.runs", "data.batch_size", *(
        f"bench.{k}" for k in ("out", "datasets", "only", "steps", "warmup", "repeats",
                               "epoch_examples", "compare_lean", "compare_before",
                               "memory_batches", "lightning_progress_bar", "threads")))
    cfg = full.bench
    base = OmegaConf.masked_copy(full, [k for k in full if k != "bench"])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    runs = dict(full.suite.runs)
    if cfg.only:
        unknown = sorted(set(cfg.only) - set(runs))
        if unknown:
            raise SystemExit(f"error: only= names no suite run: {unknown}")
        runs = {k: v for k, v in runs.items() if k in set(cfg.only)}
    cases = bench_cases(base, CONF, runs, list(cfg.datasets), cfg.compare_lean,
                        cfg.compare_before)
    result = run_train_bench(
        cases, steps=cfg.steps, warmup=cfg.warmup, repeats=cfg.repeats,
        epoch_examples=cfg.epoch_examples, memory_batches=list(cfg.memory_batches),
        progress_bar=cfg.lightning_progress_bar,
    )
    report = {
        "machine": {**tracking.machine_tags(), "cpu": cpu_info().model,
                    "flags": cpu_info().simd_flags(), "threads": torch.get_num_threads(),
                    "shared": "timings are ratios measured side by side; the machine may be "
                              "shared"},
        "settings": {**OmegaConf.to_container(cfg, resolve=True), "suite": full.suite.name,
                     "batch_size": full.data.batch_size},
        **result,
    }
    out = Path(cfg.out)
    write_json(out, report)
    log_to_mlflow(report, out, full)
    for name, row in report["rows"].items():
        log.info("%-28s lightning/gemm %.2f plain/gemm %.2f vs float %s", name,
                 row["lightning_over_gemm"], row["plain_over_gemm"],
                 f"{row['lightning_over_float']:.2f}" if "lightning_over_float" in row else "-")


def log_to_mlflow(report: dict[str, Any], path: Path, cfg: DictConfig) -> None:
    root = tracking.project_root()
    client, exp, _ = tracking.open_experiment(cfg.tracking, root)
    tags = {"xnorlab.kind": "train_bench", "stage": "train_bench", "suite": cfg.suite.name,
            "git_commit": tracking.git_commit(root), **tracking.machine_tags()}
    with tracking.tracked_run(client, exp, f"train_bench-{cfg.suite.name}", tags) as rid:
        for name, row in report["rows"].items():
            for key, value in row.items():
                if isinstance(value, dict):
                    for k, v in value.items():
                        client.log_metric(rid, f"{name}.{key}.{k}", float(v))
                elif isinstance(value, int | float) and not isinstance(value, bool):
                    client.log_metric(rid, f"{name}.{key}", float(value))
        for name, by_batch in report["memory"].items():
            for b, m in by_batch.items():
                for k, v in m.items():
                    if v is not None:
                        client.log_metric(rid, f"{name}.train_mem_{k}.{b}", float(v))
        client.log_artifact(rid, str(path))
    log.info("MLflow run %s", rid)


if __name__ == "__main__":
    main()
