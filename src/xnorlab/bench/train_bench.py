"""Training benchmark: epoch time per model x quant beside its fp32 GEMM bound, and memory.

For each network of a suite, on MNIST shapes (random pixels of the real shape: timing does not
depend on the values) at the suite's batch size, measured side by side in one process and
interleaved (the machine may be shared, so the ratios are what count):

* ``lightning``: ``steps`` training steps through the suite's own Classifier and
  ``pl.Trainer`` settings, scaled to an epoch;
* ``plain``: the same steps as a plain PyTorch loop (forward, loss, backward, Adam, clipping);
* ``gemm``: fp32 ``torch.mm`` of every multiply-accumulate of those steps: forward, grad-input
  and grad-weight GEMMs of each Linear / Conv2d (convs as their im2col GEMMs).

Binarized quants are timed with ``quant.lean_backward`` on and off (the packing's cost).
Memory per network at each of ``memory_batches``: :func:`xnorlab.train.memory.step_memory`,
in a child process whose glibc maps every block of 256 KiB or more (``MALLOC_MMAP_THRESHOLD_``),
so a freed activation leaves RSS and the RSS cross-check follows the live bytes. (In this
process, after the timings, glibc's dynamic threshold keeps such blocks on a fragmented heap:
the BNN CNN's step then raised RSS by 3-4x its live bytes.) The timings keep glibc's defaults.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from xnorlab.data.datamodule import BatchLoader
from xnorlab.quant import binarizers
from xnorlab.quant.layers import clip_latent_weights
from xnorlab.train.config import check_train_config
from xnorlab.train.memory import step_memory
from xnorlab.train.module import Classifier

log = logging.getLogger(__name__)

__all__ = ["bench_cases", "gemm_shapes", "run_train_bench", "time_gemms", "train_config"]

ENGINES = ("lightning", "plain", "gemm")
MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": str(256 * 1024)}


def train_config(base: DictConfig, conf_dir: Path, run: Mapping[str, Any],
                 lean: bool | None = None) -> dict[str, Any]:
    """The checked training config of a suite entry: ``base`` (conf/train.yaml composed) with
    the entry's model, quant and ``model.*`` args (other args, e.g. epochs, do not change a
    step)."""
    cfg = OmegaConf.create(OmegaConf.to_container(base, resolve=False))
    cfg.model = OmegaConf.load(conf_dir / "model" / f"{run['model']}.yaml")
    cfg.quant = OmegaConf.load(conf_dir / "quant" / f"{run['quant']}.yaml")
    args = [a for a in str(run.get("args") or "").split() if a.startswith("model.")]
    cfg.merge_with(OmegaConf.from_dotlist(args))
    if lean is not None:
        cfg.quant.lean_backward = lean
    return check_train_config(cfg)


def bench_cases(base: DictConfig, conf_dir: Path, runs: Mapping[str, Any],
                datasets: list[str], compare_lean: bool,
                compare_before: bool = False) -> dict[str, dict[str, Any]]:
    """``{case name: training config}``: the suite's network runs on ``datasets``. Binarized
    ones also as ``<run>:std`` (lean_backward off) and ``<run>:before`` (lean off and the
    sign / STE-mask ops this project used before they were made fast: see
    :func:`legacy_ops`); the case's config then has ``"bench_legacy_ops": True``."""
    cases = {}
    for name, run in runs.items():
        if run["model"] == "kmeans" or run["dataset"] not in datasets:
            continue
        cfg = train_config(base, conf_dir, run)
        cases[name] = cfg
        binarized = cfg["quant"]["weight_quantizer"] or cfg["quant"]["activation_quantizer"]
        if compare_lean and binarized and cfg["quant"]["lean_backward"]:
            cases[f"{name}:std"] = train_config(base, conf_dir, run, lean=False)
        if compare_before and binarized:
            cases[f"{name}:before"] = {**train_config(base, conf_dir, run, lean=False),
                                       "bench_legacy_ops": True}
    return cases


def _legacy_sign(x: torch.Tensor) -> torch.Tensor:
    one = torch.ones((), dtype=x.dtype, device=x.device)
    return torch.where(x >= 0, one, -one)


def _legacy_ste_mask(x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return grad * (x.abs() <= 1).to(grad.dtype)


class _LegacyWeightSign(torch.autograd.Function):
    """The weight sign as it was: save W, build and apply the mask in backward."""

    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(w)
        return _legacy_sign(w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (w,) = ctx.saved_tensors
        return _legacy_ste_mask(w, grad)


@contextlib.contextmanager
def legacy_ops(enabled: bool = True) -> Iterator[None]:
    """Run the block with the sign, STE mask and weight-sign code used before the fast ones
    (same values, slower), so "before" and "after" are timed side by side in one process."""
    if not enabled:
        yield
        return
    names = ("sign", "_ste_mask", "_weight_sign")
    saved = [getattr(binarizers, n) for n in names]
    for n, legacy in zip(names, (_legacy_sign, _legacy_ste_mask, _LegacyWeightSign.apply),
                         strict=True):
        setattr(binarizers, n, legacy)
    try:
        yield
    finally:
        for n, value in zip(names, saved, strict=True):
            setattr(binarizers, n, value)


def random_batches(cfg: dict[str, Any], steps: int, seed: int = 0) -> BatchLoader:
    """``steps`` batches of random 8-bit pixels in [0, 1] and labels, of the dataset's shape."""
    g = torch.Generator().manual_seed(seed)
    n, shape = steps * cfg["data"]["batch_size"], tuple(cfg["dataset"]["shape"])
    x = torch.randint(0, 256, (n, *shape), generator=g).float().div_(255)
    y = torch.randint(0, cfg["dataset"]["num_classes"], (n,), generator=g)
    return BatchLoader(x, y, cfg["data"]["batch_size"], shuffle=False, seed=seed)


# -- the GEMM bound ---------------------------------------------------------------------------

def gemm_shapes(model: nn.Module, x: torch.Tensor) -> list[tuple[int, int, int]]:
    """``(m, k, n)`` of every fp32 GEMM one training step of ``model`` on ``x`` does in its
    Linear / Conv2d layers: forward, grad-weight, and grad-input (not for the first layer,
    whose input needs no gradient). Attention's own matmuls are not counted."""
    shapes: list[tuple[int, int, int]] = []
    first = [True]

    def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        if isinstance(m, nn.Linear):
            rows, k, n = inputs[0].numel() // m.in_features, m.in_features, m.out_features
        else:
            w = m.weight
            rows = out.numel() // out.shape[1]
            k, n = w.shape[1] * w.shape[2] * w.shape[3], w.shape[0]
        shapes.append((rows, k, n))  # forward
        shapes.append((n, rows, k))  # grad weight = grad_out^T @ input
        if not first[0]:
            shapes.append((rows, n, k))  # grad input = grad_out @ weight
        first[0] = False

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Linear | nn.Conv2d)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return shapes


def time_gemms(shapes: list[tuple[int, int, int]], steps: int) -> Callable[[], float]:
    """A timer of ``steps`` x the GEMMs ``shapes`` as ``torch.mm`` on fp32 operands."""
    g = torch.Generator().manual_seed(0)
    ops = [(torch.randn(m, k, generator=g), torch.randn(k, n, generator=g), torch.empty(m, n))
           for m, k, n in shapes]

    def run() -> float:
        start = time.perf_counter()
        for _ in range(steps):
            for a, b, out in ops:
                torch.mm(a, b, out=out)
        return time.perf_counter() - start

    return run


# -- the two training loops -------------------------------------------------------------------

class _StepTimer(pl.Callback):
    """Wall time of the training batches after the first ``warmup``."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.seconds = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.seconds = time.perf_counter() - self.start


def time_lightning(cfg: dict[str, Any], batches: BatchLoader, warmup: int,
                   progress_bar: bool) -> float:
    """Seconds of the batches after ``warmup`` through the suite's Classifier and Trainer
    settings (no validation, checkpoints or logger: those are per epoch, not per step)."""
    tcfg = cfg["trainer"]
    timer = _StepTimer(warmup)
    trainer = pl.Trainer(
        max_epochs=1, accelerator=tcfg["accelerator"], devices=tcfg["devices"],
        deterministic=tcfg["deterministic"], enable_progress_bar=progress_bar,
        log_every_n_steps=tcfg["log_every_n_steps"], logger=False, num_sanity_val_steps=0,
        enable_checkpointing=False, enable_model_summary=False, limit_val_batches=0,
        callbacks=[timer],
    )
    torch.manual_seed(cfg["seed"])
    trainer.fit(Classifier(cfg), train_dataloaders=batches)
    return timer.seconds


def time_plain(cfg: dict[str, Any], batches: BatchLoader, warmup: int) -> float:
    """The same steps as a plain PyTorch loop: Adam, the configured loss, latent clipping."""
    torch.manual_seed(cfg["seed"])
    module = Classifier(cfg)
    model = module.model.train()
    opt = module.configure_optimizers()["optimizer"]
    start = 0.0
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        module._loss(model(x), y).backward()
        opt.step()
        if module.clip:
            clip_latent_weights(model)
    return time.perf_counter() - start


# -- the benchmark ----------------------------------------------------------------------------

def _stats(xs: list[float], scale: float) -> dict[str, float]:
    return {"best_s": min(xs) * scale, "median_s": statistics.median(xs) * scale,
            "repeats": len(xs)}


def _time_cases(cases: dict[str, dict[str, Any]], steps: int, warmup: int, repeats: int,
                progress_bar: bool) -> dict[str, dict[str, list[float]]]:
    times: dict[str, dict[str, list[float]]] = {c: {e: [] for e in ENGINES} for c in cases}
    loaders = {c: random_batches(cfg, warmup + steps) for c, cfg in cases.items()}
    gemms = {}
    for c, cfg in cases.items():
        model = Classifier(cfg).model
        x = next(iter(loaders[c]))[0]
        gemms[c] = time_gemms(gemm_shapes(model, x), steps)
    for r in range(repeats):  # interleaved: every case once per round
        for c, cfg in cases.items():
            log.info("round %d/%d: %s", r + 1, repeats, c)
            with legacy_ops(cfg.get("bench_legacy_ops", False)):
                times[c]["lightning"].append(
                    time_lightning(cfg, loaders[c], warmup, progress_bar))
                times[c]["plain"].append(time_plain(cfg, loaders[c], warmup))
            times[c]["gemm"].append(gemms[c]())
    return times


def _row(cfg: dict[str, Any], t: dict[str, list[float]], scale: float) -> dict[str, Any]:
    row: dict[str, Any] = {"model": cfg["model"]["name"], "quant": cfg["quant"]["name"],
                           "lean_backward": cfg["quant"]["lean_backward"],
                           "legacy_ops": bool(cfg.get("bench_legacy_ops", False))}
    row.update({e: _stats(t[e], scale) for e in ENGINES})
    for e in ("lightning", "plain"):
        row[f"{e}_over_gemm"] = min(t[e]) / min(t["gemm"])
        row[f"{e}_over_gemm_median"] = statistics.median(t[e]) / statistics.median(t["gemm"])
    row["lightning_over_plain"] = min(t["lightning"]) / min(t["plain"])
    return row


def _twin_ratios(rows: dict[str, dict[str, Any]], cases: dict[str, dict[str, Any]]) -> None:
    """Each binarized row's epoch over its float twin's (same dataset, model and model args),
    and lean over standard."""
    for name, row in rows.items():
        base = name.split(":")[0]
        float_name = base.rsplit("-", 1)[0] + "-float"
        if row["quant"] != "float" and float_name in rows:
            for e in ("lightning", "plain"):
                row[f"{e}_over_float"] = (row[e]["best_s"] / rows[float_name][e]["best_s"])
        for other in ("std", "before"):
            if ":" not in name and f"{name}:{other}" in rows:
                for e in ("lightning", "plain"):
                    row[f"{e}_over_{other}"] = row[e]["best_s"] / rows[f"{name}:{other}"][e][
                        "best_s"]


def _memory(cases: dict[str, dict[str, Any]], batches: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, cfg in cases.items():
        if cfg.get("bench_legacy_ops"):
            continue  # the same bytes as :std
        model = Classifier(cfg).model
        out[name] = {}
        for b in batches:
            loader = random_batches(with_batch(cfg, b), 1)
            x, y = next(iter(loader))
            out[name][f"b{b}"] = step_memory(model, x, y)
    return out


def _memory_in_child(cases: dict[str, dict[str, Any]], batches: list[int]) -> dict[str, Any]:
    """:func:`_memory` in a fresh interpreter with :data:`MEMORY_ENV` (see the module doc)."""
    with tempfile.TemporaryDirectory() as tmp:
        job, out = Path(tmp) / "job.json", Path(tmp) / "memory.json"
        job.write_text(json.dumps({"cases": cases, "batches": batches}))
        proc = subprocess.run([sys.executable, "-m", __name__, str(job), str(out)],
                              env={**os.environ, **MEMORY_ENV}, capture_output=True, text=True)
        if proc.returncode or not out.exists():
            raise RuntimeError(f"training memory measurement failed:\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text())


def with_batch(cfg: dict[str, Any], batch: int) -> dict[str, Any]:
    """``cfg`` with another training batch size (a shallow copy)."""
    return {**cfg, "data": {**cfg["data"], "batch_size": batch}}


def run_train_bench(cases: dict[str, dict[str, Any]], *, steps: int, warmup: int,
                    repeats: int, epoch_examples: int, memory_batches: list[int],
                    progress_bar: bool = False) -> dict[str, Any]:
    """Time and measure every case; returns ``{"rows": ..., "memory": ...}``.

    Times are scaled from ``steps`` batches to an epoch of ``epoch_examples`` images.
    """
    if steps < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"steps={steps}, repeats={repeats} need >= 1, warmup={warmup} >= 0")
    times = _time_cases(cases, steps, warmup, repeats, progress_bar)
    rows = {}
    for c, cfg in cases.items():
        per_epoch = epoch_examples / (steps * cfg["data"]["batch_size"])
        rows[c] = {**_row(cfg, times[c], per_epoch), "steps_timed": steps,
                   "batch": cfg["data"]["batch_size"], "epoch_examples": epoch_examples}
    _twin_ratios(rows, cases)
    return {"rows": rows, "memory": _memory_in_child(cases, memory_batches)}


if __name__ == "__main__":  # the child of _memory_in_child: job.json -> memory.json
    _job = json.loads(Path(sys.argv[1]).read_text())
    Path(sys.argv[2]).write_text(json.dumps(_memory(_job["cases"], _job["batches"])))
