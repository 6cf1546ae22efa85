"""DVC stage `benchmark`: packed XNOR-popcount engine vs float32 PyTorch, in one process.

Writes reports/benchmark.json (DVC metrics) and logs it to MLflow.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import hydra
import numba
import torch
from omegaconf import DictConfig, OmegaConf

from xnorlab import tracking
from xnorlab.bench.baseline import float_twin
from xnorlab.bench.exactness import compare
from xnorlab.bench.paper_mlp import random_paper_mlp
from xnorlab.bench.peak import measure_gemm, peak_xor_popcount
from xnorlab.bench.timing import benchmark_model, inference_peak_rss
from xnorlab.data.datamodule import ImageDataModule
from xnorlab.io import cpu_info, write_json
from xnorlab.packed.engine import PackedEngine
from xnorlab.packed.export import export_model
from xnorlab.train.measure import state_dict_bytes
from xnorlab.train.module import Classifier

log = logging.getLogger("xnorlab.benchmark")


def test_images(run_cfg: dict[str, Any]) -> torch.Tensor:
    ds = run_cfg["dataset"]
    dm = ImageDataModule(ds, Path(run_cfg["data"]["raw_dir"]) / ds["name"], val_size=1)
    dm.setup()
    return dm.splits["test"][0]


def bench_one(name: str, model: torch.nn.Module, engine: PackedEngine, images: torch.Tensor,
              cfg: DictConfig, extra: dict[str, Any]) -> dict[str, Any]:
    log.info("benchmarking %s", name)
    reference = None
    if cfg.reference:
        reference = PackedEngine(engine.layers, engine.input_shape, backend="numpy")
    rows = benchmark_model(model, engine, images, list(cfg.batches), list(cfg.threads),
                           cfg.repeats, cfg.min_seconds, reference)
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    return {**extra, "results": rows,
            **inference_peak_rss(model, engine, images, max(cfg.batches))}


def speedup(rows: list[dict[str, Any]], threads: int, batch: int, field: str) -> float | None:
    """Packed-fast over torch for one setting: images/s ratio, or latency ratio (batch 1)."""
    pick = {r["engine"]: r for r in rows if r["threads"] == threads and r["batch"] == batch}
    if "packed_fast" not in pick or "torch_float32" not in pick:
        return None
    return pick["packed_fast"][field] / pick["torch_float32"][field]


def targets(report: dict[str, Any]) -> dict[str, float | None]:
    """The ratios the engine is judged on (see README: Benchmark targets)."""
    paper = report["models"].get("paper_mlp", {}).get("results", [])
    cnn = report["models"].get("mnist-cnn-bnn", {}).get("results", [])
    t1 = report["gemm"].get("threads_1", {}).get("xnor_gemm_threshold", {})
    t2_over_t1 = None
    if paper:
        fast = {(r["threads"], r["batch"]): r for r in paper if r["engine"] == "packed_fast"}
        if (2, 1024) in fast and (1, 1024) in fast:
            t2_over_t1 = fast[(2, 1024)]["images_per_s_best"] / fast[(1, 1024)]["images_per_s_best"]
    return {
        "paper_mlp_speedup_b1024_t1": speedup(paper, 1, 1024, "images_per_s_best"),
        "paper_mlp_latency_ratio_b1_t1": speedup(paper, 1, 1, "images_per_s_best"),
        "hidden_kernel_fraction_of_peak_t1": t1.get("fraction_of_peak"),
        "cnn_speedup_b64_t1": speedup(cnn, 1, 64, "images_per_s_best"),
        "paper_mlp_size_ratio": report["models"].get("paper_mlp", {}).get("size_ratio"),
        "paper_mlp_packed_scaling_t2_over_t1_b1024": t2_over_t1,
    }


@hydra.main(config_path="../conf", config_name="benchmark", version_base="1.3")
def main(cfg: DictConfig) -> None:
    report: dict[str, Any] = {
        "machine": {**tracking.machine_tags(), "cpu": cpu_info().model,
                    "flags": cpu_info().simd_flags(), "threads": list(cfg.threads),
                    "numba": numba.__version__},
        "settings": OmegaConf.to_container(cfg, resolve=True),
    }
    report["settings"].pop("suite", None)
    log.info("peak XOR+popcount on one core")
    report["peak"] = peak_xor_popcount(threads=1, seconds=cfg.peak.seconds,
                                       repeats=cfg.peak.repeats)
    report["peak"]["binary_ops_per_s_1core"] = report["peak"]["bitops_per_s"]
    log.info("binary GEMM %s", dict(cfg.gemm))
    report["gemm"] = measure_gemm(**cfg.gemm, threads=tuple(cfg.threads))
    report["models"] = {}

    images = None
    for run in cfg.suite.get("exports", []):
        module = Classifier.load_from_checkpoint(
            Path(cfg.models_dir) / run / "checkpoints" / "best.ckpt", map_location="cpu")
        packed = Path(cfg.packed_dir) / f"{run}.xnor"
        engine = PackedEngine.load(packed)
        images = test_images(module.cfg)
        export_check = json.loads((Path(cfg.packed_dir) / f"{run}.json").read_text())
        run_id_file = Path(cfg.models_dir) / run / "mlflow_run_id"
        twin = float_twin(module.cfg["model"], engine.input_shape, engine.num_classes)
        report["models"][run] = bench_one(run, twin, engine, images, cfg, {
            "train_run_id": run_id_file.read_text().strip() if run_id_file.exists() else None,
            "exact": export_check["exactness"],
            "packed_bytes": packed.stat().st_size,
            "float_checkpoint_bytes": state_dict_bytes(module.model),
            "size_ratio": state_dict_bytes(module.model) / packed.stat().st_size,
        })

    if cfg.paper_mlp.enabled:
        model = random_paper_mlp(cfg.paper_mlp.hidden, cfg.paper_mlp.depth)
        engine = export_model(model, (1, 28, 28))
        tmp = Path(tempfile.mkdtemp()) / "paper_mlp.xnor"  # not in packed/, a stage dep
        engine.save(tmp)
        if images is None:
            images = torch.rand(1024, 1, 28, 28)
        exact = compare(model, engine, images[:256])
        if not exact.exact:
            raise SystemExit(f"error: packed paper MLP disagrees with torch: {exact.as_dict()}")
        twin = float_twin({"name": "mlp", "hidden": cfg.paper_mlp.hidden,
                           "depth": cfg.paper_mlp.depth}, (1, 28, 28), 10)
        report["models"]["paper_mlp"] = bench_one("paper_mlp", twin, engine, images, cfg, {
            "packed_bytes": tmp.stat().st_size,
            "float_checkpoint_bytes": state_dict_bytes(model),
            "size_ratio": state_dict_bytes(model) / tmp.stat().st_size,
            "exactness_256_images": exact.as_dict(),
        })
        tmp.unlink()

    report["targets"] = targets(report)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, report)
    log_to_mlflow(report, out, cfg)
    for key, value in report["targets"].items():
        log.info("%s = %s", key, f"{value:.3g}" if isinstance(value, float) else value)


def log_to_mlflow(report: dict[str, Any], path: Path, cfg: DictConfig) -> None:
    root = tracking.project_root()
    client, exp, _ = tracking.open_experiment(cfg.tracking, root)
    tags = {"xnorlab.kind": "benchmark", "stage": "benchmark", "suite": cfg.suite.name,
            "git_commit": tracking.git_commit(root), **tracking.machine_tags(),
            "machine.cpu_flags": " ".join(report["machine"]["flags"])}
    with tracking.tracked_run(client, exp, f"benchmark-{cfg.suite.name}", tags) as rid:
        for key, value in report["targets"].items():
            if value is not None:
                client.log_metric(rid, key, float(value))
        client.log_metric(rid, "peak_bitops_per_s_1core", report["peak"]["bitops_per_s"])
        for name, entry in report["models"].items():
            for r in entry["results"]:
                key = f"{name}.{r['engine']}.t{r['threads']}.b{r['batch']}.images_per_s"
                client.log_metric(rid, key, r["images_per_s_best"])
            client.log_metric(rid, f"{name}.size_ratio", entry["size_ratio"])
        client.log_artifact(rid, str(path))
    log.info("MLflow run %s", rid)


if __name__ == "__main__":
    os.environ.setdefault("NUMBA_NUM_THREADS", str(os.cpu_count() or 1))
    main()
