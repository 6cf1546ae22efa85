"""The benchmark stage: packed XNOR-popcount engine vs float32 PyTorch, side by side.

:func:`run_benchmark` builds ``reports/benchmark.json``: the machine, its measured peak
XOR+popcount rate, the hidden-layer GEMM against that peak, every exported suite run and the
paper's MLP timed against their float32 twins, per-layer time tables and the targets
(:mod:`.targets`). :func:`log_to_mlflow` records it as one MLflow run.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numba
import torch
from omegaconf import DictConfig, OmegaConf

from xnorlab import tracking
from xnorlab.bench.baseline import float_twin
from xnorlab.bench.exactness import compare, to_uint8
from xnorlab.bench.layers import format_table, layer_table
from xnorlab.bench.paper_mlp import random_paper_mlp
from xnorlab.bench.peak import measure_gemm, peak_xor_popcount
from xnorlab.bench.targets import evaluate_all
from xnorlab.bench.timing import benchmark_model, inference_peak_rss, set_threads
from xnorlab.io import cpu_info
from xnorlab.packed.engine import PackedEngine
from xnorlab.packed.export import export_model
from xnorlab.packed.graph import GraphEngine

log = logging.getLogger("xnorlab.benchmark")

PAPER = "paper_mlp"


def test_images(run_cfg: dict[str, Any]) -> torch.Tensor:
    """The test split of a run's dataset (float images in [0, 1])."""
    from xnorlab.data.datamodule import ImageDataModule

    ds = run_cfg["dataset"]
    dm = ImageDataModule(ds, Path(run_cfg["data"]["raw_dir"]) / ds["name"], val_size=1)
    dm.setup()
    return dm.splits["test"][0]


def tiled(images: torch.Tensor, batch: int) -> torch.Tensor:
    """The first ``batch`` images, tiled when there are fewer."""
    x = images[:batch]
    if len(x) < batch:
        x = x.repeat((batch + len(x) - 1) // len(x), 1, 1, 1)[:batch]
    return x


def bench_one(name: str, model: torch.nn.Module, engine: PackedEngine, images: torch.Tensor,
              cfg: DictConfig, extra: dict[str, Any]) -> dict[str, Any]:
    """Timing rows (every engine x threads x batch) and peak RSS of one model."""
    log.info("benchmarking %s", name)
    reference = reference_engine(engine) if cfg.reference else None
    threads = max(cfg.threads)
    around = []  # the machine's own scaling just before and after this model's timings
    if threads > 1:
        around.append(machine_scaling(cfg, threads, seconds=0.05, repeats=3))
    rows = benchmark_model(model, engine, images, list(cfg.batches), list(cfg.threads),
                           cfg.repeats, cfg.min_seconds, reference)
    if threads > 1:
        around.append(machine_scaling(cfg, threads, seconds=0.05, repeats=3))
    set_threads(1)
    return {**extra, "results": rows, "machine_scaling": around,
            **inference_peak_rss(model, engine, images, max(cfg.batches))}


def reference_engine(engine: Any) -> Any:
    """The same model on the NumPy reference backend (a graph's real ops are NumPy anyway)."""
    if isinstance(engine, GraphEngine):
        return GraphEngine(engine.nodes, engine.input_shape, engine.output, backend="numpy")
    return PackedEngine(engine.layers, engine.input_shape, backend="numpy")


def layer_tables(name: str, engine: PackedEngine, images: torch.Tensor, cfg: DictConfig,
                 peak: float) -> list[dict[str, Any]]:
    """Per-layer time tables of one model at each configured batch and thread count."""
    tables = []
    for batch in cfg.layer_tables.batches.get(name, []):
        u8 = to_uint8(tiled(images, int(batch)))
        for t in cfg.threads:
            set_threads(int(t))
            table = layer_table(engine, u8, peak * int(t), cfg.layer_tables.repeats,
                                cfg.layer_tables.min_seconds)
            table["threads"] = int(t)
            log.info("%s, %d thread(s):\n%s", name, t, format_table(table))
            tables.append(table)
    set_threads(1)
    return tables


def run_dir(run: str, cfg: DictConfig) -> Path:
    """The folder of the network a suite run exported: its `export_seed`'s."""
    return Path(cfg.models_dir) / run / f"seed{cfg.suite.export_seed}"


def _suite_model(run: str, cfg: DictConfig) -> tuple[Any, PackedEngine, Path]:
    from xnorlab.train.module import Classifier

    module = Classifier.load_from_checkpoint(
        run_dir(run, cfg) / "checkpoints" / "best.ckpt", map_location="cpu")
    packed = Path(cfg.packed_dir) / f"{run}.xnor"
    return module, PackedEngine.load(packed), packed


def bench_kmeans_run(run: str, cfg: DictConfig, ckpt: Path) -> dict[str, Any]:
    """An exported K-means run: the packed nearest-centroid vs its float32 torch twin."""
    from xnorlab.bench.kmeans import FloatAssign
    from xnorlab.models.kmeans_io import load_kmeans_checkpoint

    km, run_cfg = load_kmeans_checkpoint(ckpt)
    packed = Path(cfg.packed_dir) / f"{run}.xnor"
    engine = PackedEngine.load(packed)
    export_check = json.loads((Path(cfg.packed_dir) / f"{run}.json").read_text())
    run_id_file = run_dir(run, cfg) / "mlflow_run_id"
    float_bytes = 4 * km.cluster_centers_.size
    return bench_one(run, FloatAssign(km).eval(), engine, test_images(run_cfg), cfg, {
        "train_run_id": run_id_file.read_text().strip() if run_id_file.exists() else None,
        "exact": export_check["exactness"],
        "packed_bytes": packed.stat().st_size,
        "float_checkpoint_bytes": float_bytes,
        "size_ratio": float_bytes / packed.stat().st_size,
    })


def bench_suite_run(run: str, cfg: DictConfig, peak: float
                    ) -> tuple[dict[str, Any], torch.Tensor | None]:
    """One exported run of the suite: its report entry and its test images (None for
    K-means, whose images are not a network's)."""
    from xnorlab.models.kmeans_io import is_kmeans_checkpoint
    from xnorlab.train.measure import state_dict_bytes

    ckpt = run_dir(run, cfg) / "checkpoints" / "best.ckpt"
    if is_kmeans_checkpoint(ckpt):
        return bench_kmeans_run(run, cfg, ckpt), None
    module, engine, packed = _suite_model(run, cfg)
    images = test_images(module.cfg)
    export_check = json.loads((Path(cfg.packed_dir) / f"{run}.json").read_text())
    run_id_file = run_dir(run, cfg) / "mlflow_run_id"
    twin = float_twin(module.cfg["model"], engine.input_shape, engine.num_classes)
    float_bytes = state_dict_bytes(module.model)
    entry = bench_one(run, twin, engine, images, cfg, {
        "train_run_id": run_id_file.read_text().strip() if run_id_file.exists() else None,
        "exact": export_check["exactness"],
        "packed_bytes": packed.stat().st_size,
        "float_checkpoint_bytes": float_bytes,
        "size_ratio": float_bytes / packed.stat().st_size,
    })
    if "binary_weight_ratio" in export_check:  # a graph (ViT): real parts stay float32
        entry["binary_weight_ratio"] = export_check["binary_weight_ratio"]
    if run in cfg.layer_tables.batches:
        entry["layer_tables"] = layer_tables(run, engine, images, cfg, peak)
    return entry, images


def bench_paper_mlp(cfg: DictConfig, images: torch.Tensor | None, peak: float) -> dict[str, Any]:
    """The paper's 784-4096x3-10 BNN (random weights): exactness on 256 images, timing."""
    from xnorlab.train.measure import state_dict_bytes

    model = random_paper_mlp(cfg.paper_mlp.hidden, cfg.paper_mlp.depth)
    engine = export_model(model, (1, 28, 28))
    with tempfile.TemporaryDirectory() as tmp:  # not in packed/, a stage dep
        path = Path(tmp) / "paper_mlp.xnor"
        engine.save(path)
        packed_bytes = path.stat().st_size
    if images is None:
        images = torch.rand(1024, 1, 28, 28)
    exact = compare(model, engine, images[:256])
    if not exact.exact:
        raise SystemExit(f"error: packed paper MLP disagrees with torch: {exact.as_dict()}")
    twin = float_twin({"name": "mlp", "hidden": cfg.paper_mlp.hidden,
                       "depth": cfg.paper_mlp.depth}, (1, 28, 28), 10)
    float_bytes = state_dict_bytes(model)
    entry = bench_one(PAPER, twin, engine, images, cfg, {
        "packed_bytes": packed_bytes,
        "float_checkpoint_bytes": float_bytes,
        "size_ratio": float_bytes / packed_bytes,
        "exactness_256_images": exact.as_dict(),
    })
    entry["layer_tables"] = layer_tables(PAPER, engine, images, cfg, peak)
    return entry


def machine_facts(cfg: DictConfig) -> dict[str, Any]:
    facts = {**tracking.machine_tags(), "cpu": cpu_info().model,
             "flags": cpu_info().simd_flags(), "threads": list(cfg.threads),
             "numba": numba.__version__, "shared_machine_note": cfg.machine_note}
    fp = Path(cfg.machine_file)
    if fp.exists():
        facts["fingerprint"] = json.loads(fp.read_text())
    return facts


def machine_scaling(cfg: DictConfig, threads: int, seconds: float | None = None,
                    repeats: int | None = None) -> float:
    """The machine's own parallel ceiling now: peak XOR+popcount on ``threads`` cores over one
    core, the same loop on each (no shared data). On a shared VM it varied from 1.5 to 2.0 on
    2 cores within minutes, so a scaling target is read against it, measured around each
    model's timings and at the start and the end of the benchmark."""
    seconds, repeats = seconds or cfg.peak.seconds, repeats or cfg.peak.repeats
    one, many = (peak_xor_popcount(threads=t, seconds=seconds, repeats=repeats)
                 for t in (1, threads))
    return many["bitops_per_s"] / one["bitops_per_s"]


def run_benchmark(cfg: DictConfig) -> dict[str, Any]:
    """The whole benchmark report (see the module docstring)."""
    settings = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(settings, dict)
    settings.pop("suite", None)
    report: dict[str, Any] = {"machine": machine_facts(cfg), "settings": settings}
    log.info("peak XOR+popcount on one core")
    report["peak"] = peak_xor_popcount(threads=1, seconds=cfg.peak.seconds,
                                       repeats=cfg.peak.repeats)
    report["peak"]["binary_ops_per_s_1core"] = report["peak"]["bitops_per_s"]
    peak = report["peak"]["bitops_per_s"]
    threads = max(cfg.threads)
    if threads > 1:
        report["machine_scaling"] = {"threads": threads, "start": machine_scaling(cfg, threads)}
    log.info("binary GEMM %s", dict(cfg.gemm))
    report["gemm"] = measure_gemm(**cfg.gemm, threads=tuple(cfg.threads))
    report["models"] = {}
    images = None
    for run in cfg.suite.get("exports", []):
        report["models"][run], run_images = bench_suite_run(run, cfg, peak)
        images = run_images if run_images is not None else images
    if cfg.paper_mlp.enabled:
        report["models"][PAPER] = bench_paper_mlp(cfg, images, peak)
    if threads > 1:
        report["machine_scaling"]["end"] = machine_scaling(cfg, threads)
    report["targets"] = evaluate_all(report, OmegaConf.to_container(cfg.targets, resolve=True))
    return report


def log_to_mlflow(report: dict[str, Any], path: Path, cfg: DictConfig) -> str:
    """One MLflow run: the targets (best), the peak, every images/s figure, the report file."""
    root = tracking.project_root()
    client, exp, _ = tracking.open_experiment(cfg.tracking, root)
    tags = {"xnorlab.kind": "benchmark", "stage": "benchmark", "suite": cfg.suite.name,
            "git_commit": tracking.git_commit(root), **tracking.machine_tags(),
            "machine.cpu_flags": " ".join(report["machine"]["flags"])}
    with tracking.tracked_run(client, exp, f"benchmark-{cfg.suite.name}", tags) as rid:
        for key, target in report["targets"].items():
            for which in ("best", "median"):
                if target[which] is not None:
                    client.log_metric(rid, f"{key}.{which}", float(target[which]))
        client.log_metric(rid, "peak_bitops_per_s_1core", report["peak"]["bitops_per_s"])
        for name, entry in report["models"].items():
            for r in entry["results"]:
                key = f"{name}.{r['engine']}.t{r['threads']}.b{r['batch']}.images_per_s"
                client.log_metric(rid, key, r["images_per_s_best"])
            client.log_metric(rid, f"{name}.size_ratio", entry["size_ratio"])
        client.log_artifact(rid, str(path))
    return rid
