"""Suite CNN (width 8, FC 256, MNIST-shaped): this tree's kernels vs a git revision's, per layer
and end to end, and against float32 torch.

    nice python scripts/bench_cnn_layers.py --rev d32a835 --batch 64 --repeats 7 --rounds 2

The old kernels are ``src/xnorlab/packed/kernels.py`` at ``--rev``, imported as a module of its
own; both run the same exported weights (and must give the same bits). Each (kernels, threads)
measurement runs in a fresh process, old and new alternating, ``--rounds`` times: a second copy
of the conv kernels compiled into the same process ran 1.6-2.2x slower than the first (same
machine code; seen with two copies of one file), so old and new never share a process. Each
process also times float32 torch, so every speedup over torch is side by side in one process.
Figures are best / median over all repeats (each repeat lasts ``--min-seconds``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch

from xnorlab.bench.baseline import float_twin
from xnorlab.bench.timing import set_threads, time_calls
from xnorlab.models.build import build_model
from xnorlab.packed import centroid_kernels, graph_kernels, kernels
from xnorlab.packed.backend import OPS
from xnorlab.packed.export import export_model
from xnorlab.packed.layers import Act
from xnorlab.quant.layers import is_binary_layer

CFG = {"name": "cnn", "width": 8, "fc_width": 256}


def old_kernels(rev: str) -> types.ModuleType:
    """``packed/kernels.py`` at ``rev`` as a module (relative imports made absolute)."""
    src = subprocess.run(["git", "show", f"{rev}:src/xnorlab/packed/kernels.py"],
                         check=True, capture_output=True, text=True).stdout
    src = src.replace("from .reference import", "from xnorlab.packed.reference import")
    path = Path(tempfile.mkdtemp()) / f"kernels_{rev}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = mod
    spec.loader.exec_module(mod)
    return mod


def ops_of(mod: types.ModuleType, threads: int) -> types.SimpleNamespace:
    """A backend namespace from a kernels module (as ``engine.get_backend``)."""
    def find(op):
        fn = next(getattr(m, op) for m in (mod, graph_kernels, centroid_kernels)
                  if hasattr(m, op))
        return lambda *a, **k: fn(*a, threads=threads, **k)

    return types.SimpleNamespace(name="numba", **{op: find(op) for op in OPS})


def suite_cnn(seed: int = 0):
    """A BNN CNN of the suite's shape, random latent weights, BN stats from random images."""
    torch.manual_seed(seed)
    model = build_model(CFG, "bnn", (1, 28, 28), 10)
    x = torch.rand(256, 1, 28, 28) * (torch.rand(256, 1, 28, 28) < 0.3)
    with torch.no_grad():
        for m in model.modules():
            if is_binary_layer(m):
                m.weight.uniform_(-1, 1)
            if isinstance(m, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                m.momentum = 1.0
        model.train()
        model(x)
    model.eval()
    return model, x


def measure(rev: str, threads: int, batch: int, repeats: int, min_s: float) -> dict:
    """Per-call seconds (every repeat) of each layer, the whole net and float torch."""
    model, x = suite_cnn()
    engine = export_model(model, (1, 28, 28), backend="numpy")  # compiles no numba kernel
    engine.ops = ops_of(kernels if rev == "tree" else old_kernels(rev), threads)
    x = x[:batch]
    u8 = np.round(255 * x.numpy()).astype(np.uint8)
    set_threads(threads)
    out: dict = {"layers": [], "names": []}
    a = Act("u8", u8)
    for layer, kw in engine.steps:
        def step(layer=layer, a=a, kw=kw):
            return layer.forward(a, engine.ops, False, **kw)

        out["layers"].append(time_calls(step, repeats, min_s)[1])
        out["names"].append(f"{layer.type_name} {getattr(layer, 'out_channels', '')} "
                            f"{'pool' if kw else ''}")
        a = layer.forward(a, engine.ops, False, **kw)[0]
    out["net"] = time_calls(lambda: engine.predict(u8), repeats, min_s)[1]
    twin = float_twin(CFG, (1, 28, 28), 10)
    with torch.inference_mode():
        out["torch"] = time_calls(lambda: twin(x).argmax(1), repeats, min_s)[1]
    out["bits"] = [int(v) for v in np.asarray(engine.scores(u8)).argmax(1)]
    return out


def best_med(v: list[float]) -> str:
    return f"{1e6 * min(v):.0f} / {1e6 * float(np.median(v)):.0f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rev", default="d32a835")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--min-seconds", type=float, default=0.05)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        json.dump(measure(args.child, args.threads[0], args.batch, args.repeats,
                          args.min_seconds), sys.stdout)
        return
    runs: dict = {}
    for _ in range(args.rounds):
        for t in args.threads:
            for which in (args.rev, "tree"):
                cmd = [sys.executable, __file__, "--child", which, "--threads", str(t),
                       "--batch", str(args.batch), "--repeats", str(args.repeats),
                       "--min-seconds", str(args.min_seconds)]
                r = json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                              text=True).stdout)
                acc = runs.setdefault((which, t), {"layers": [[] for _ in r["layers"]],
                                                   "net": [], "torch": [], "bits": r["bits"],
                                                   "names": r["names"]})
                assert acc["bits"] == r["bits"], "old and new kernels disagree"
                for i, v in enumerate(r["layers"]):
                    acc["layers"][i] += v
                acc["net"] += r["net"]
                acc["torch"] += r["torch"]
    old_bits, new_bits = runs[(args.rev, args.threads[0])]["bits"], runs[("tree", 1)]["bits"]
    assert old_bits == new_bits, "old and new kernels predict differently"
    for t in args.threads:
        o, n = runs[(args.rev, t)], runs[("tree", t)]
        print(f"\n### batch {args.batch}, {t} thread(s): best / median us\n")
        print(f"| layer | old ({args.rev}) | new | old/new (best) |\n| --- | --- | --- | --- |")
        for name, lo, ln in zip(n["names"], o["layers"], n["layers"], strict=True):
            print(f"| {name} | {best_med(lo)} | {best_med(ln)} | {min(lo) / min(ln):.2f} |")
        for key in ("net", "torch"):
            print(f"| {key} | {best_med(o[key])} | {best_med(n[key])} | "
                  f"{min(o[key]) / min(n[key]):.2f} |")
        print(f"| torch/net (best, median) | {min(o['torch']) / min(o['net']):.2f}, "
              f"{np.median(o['torch']) / np.median(o['net']):.2f} | "
              f"{min(n['torch']) / min(n['net']):.2f}, "
              f"{np.median(n['torch']) / np.median(n['net']):.2f} | |")
    if len(args.threads) > 1:
        t0, t1 = args.threads[0], args.threads[-1]
        for which in (args.rev, "tree"):
            a, b = runs[(which, t0)]["net"], runs[(which, t1)]["net"]
            print(f"\n{which}: net {t1} threads / {t0} thread: best {min(a) / min(b):.2f}, "
                  f"median {np.median(a) / np.median(b):.2f}")


if __name__ == "__main__":
    main()
