"""Report figures as deterministic PNG bytes: accuracy vs model size (Pareto front marked),
packed-over-float speedup by batch size, validation curves float vs binarized."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display on these machines
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from xnorlab.io import figure_png  # noqa: E402
from xnorlab.report.benchmark import Benchmark  # noqa: E402
from xnorlab.report.collect import (  # noqa: E402
    Record,
    Slot,
    dataset_label,
    dataset_rank,
    model_label,
)

# colour and marker per quant method; distilled students use hollow markers / dashed lines
STYLE = {
    "float": ("black", "o"),
    "bc_det": ("tab:blue", "s"),
    "bc_stoch": ("tab:cyan", "D"),
    "bnn": ("tab:red", "^"),
    "bnn_stoch": ("tab:orange", "v"),
    "xnor": ("tab:green", "P"),
}


def style(quant: str) -> tuple[str, str]:
    return STYLE.get(quant, ("tab:purple", "X"))


def deployed_bytes(record: Record) -> float | None:
    """What the model takes to store: 32-bit for float runs, 1-bit kernels for binarized."""
    return record.metric("model_bytes_1bit" if record.slot.binarized else "model_bytes_fp32")


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats (smaller or equal size and higher or equal
    accuracy, one strictly), ordered by size."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def _grid(n: int, width: float = 5.2, height: float = 4.2) -> tuple[plt.Figure, list]:
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def _legend_entries(ax: plt.Axes, slots: Sequence[Slot]) -> None:
    seen = []
    for s in slots:
        if (s.quant, s.distilled) in seen:
            continue
        seen.append((s.quant, s.distilled))
        color, marker = style(s.quant)
        ax.scatter([], [], color=color if not s.distilled else "none", edgecolors=color,
                   marker=marker, s=50, label=s.method_label)


def accuracy_vs_size(records: list[Record], datasets: list[str], dpi: int) -> bytes | None:
    """Test accuracy (%) against stored model size (log x), one panel per dataset, the Pareto
    front (smallest model for its accuracy) joined by a line and circled."""
    done = [r for r in records if r.metric("test_acc") is not None and deployed_bytes(r)]
    if not done:
        return None
    ds = sorted({r.slot.dataset for r in done}, key=lambda d: dataset_rank(d, datasets))
    fig, axes = _grid(len(ds))
    for ax, d in zip(axes, ds, strict=True):
        recs = [r for r in done if r.slot.dataset == d]
        pts = [(deployed_bytes(r) / 1024, 100 * r.metrics["test_acc"]) for r in recs]
        for r, (x, y) in zip(recs, pts, strict=True):
            color, marker = style(r.slot.quant)
            ax.scatter([x], [y], color=color if not r.slot.distilled else "none",
                       edgecolors=color, marker=marker, s=50, zorder=3)
            if r.n > 1:  # +- one standard deviation over seeds
                ax.errorbar([x], [y], yerr=[100 * r.std.get("test_acc", 0.0)], fmt="none",
                            ecolor=color, capsize=3, linewidth=1, zorder=2)
            ax.annotate(model_label(r.slot.model), (x, y), textcoords="offset points",
                        xytext=(5, 4), fontsize=7)
        front = pareto_front(pts)
        fx = [pts[i][0] for i in front]
        fy = [pts[i][1] for i in front]
        ax.step(fx, fy, where="post", color="0.5", linestyle="--", linewidth=1, zorder=1)
        ax.scatter(fx, fy, s=180, facecolors="none", edgecolors="0.4", linewidths=1.2,
                   zorder=2, label="Pareto front")
        _legend_entries(ax, [r.slot for r in recs])
        ax.set_xscale("log")
        ax.set(xlabel="stored model size (KiB, log scale)", ylabel="test accuracy (%)",
               title=f"{dataset_label(d)}: accuracy vs model size")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right")
    return figure_png(fig, dpi)


def speedup_by_batch(bench: Benchmark, keys: Sequence[str], dpi: int) -> bytes | None:
    """Speedup of each packed engine over PyTorch float32, by batch size, one line per model."""
    from xnorlab.report.benchmark import FLOAT_ENGINE, PACKED_ENGINES

    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for i, key in enumerate(keys):
        results = bench.results(key)
        color = plt.get_cmap("tab10")(i % 10)
        for engine, ls in zip(PACKED_ENGINES, ("-", "--"), strict=True):
            xs, ys = [], []
            for b in bench.batches:
                f = [r for r in results if r["engine"] == FLOAT_ENGINE and r["batch"] == b]
                p = [r for r in results if r["engine"] == engine and r["batch"] == b]
                if f and p and f[0]["images_per_s_median"]:
                    xs.append(b)
                    ys.append(p[0]["images_per_s_median"] / f[0]["images_per_s_median"])
            if xs:
                ax.plot(xs, ys, marker="o", linestyle=ls, color=color, label=f"{key} ({engine})")
                drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.axhline(1.0, color="0.5", linewidth=1, linestyle=":", label="float32 (1×)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(bench.batches, [str(b) for b in bench.batches])
    ax.set_yscale("log")  # engines span orders of magnitude; 1× is the float baseline
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.set(xlabel="batch size (images, log scale)",
           ylabel="speedup over PyTorch float32 (log scale, median images/s)",
           title=f"Packed engine speedup, {bench.threads} thread"
                 f"{'s' if bench.threads != 1 else ''}\n{bench.cpu}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return figure_png(fig, dpi)


def training_curves(
    model: str, series: dict[str, list[tuple[Slot, list[tuple[int, float, float]]]]], dpi: int
) -> bytes | None:
    """Validation accuracy (%) per epoch of float and binarized runs of one architecture, one
    panel per dataset (`series`: dataset -> [(slot, [(epoch, mean val_acc, std over seeds)])]),
    with +- one standard deviation as error bars."""
    ds = [d for d, runs in series.items() if any(h for _, h in runs)]
    if not ds:
        return None
    fig, axes = _grid(len(ds), width=5.5)
    for ax, d in zip(axes, ds, strict=True):
        for slot, history in series[d]:
            if not history:
                continue
            color, marker = style(slot.quant)
            ax.errorbar([e for e, _, _ in history], [100 * v for _, v, _ in history],
                        yerr=[100 * sd for _, _, sd in history], marker=marker, markersize=4,
                        capsize=2, color=color, linestyle="--" if slot.distilled else "-",
                        label=f"{slot.method_label} ({slot.key})")
        ax.set(xlabel="epoch", ylabel="validation accuracy (%)",
               title=f"{model_label(model)} on {dataset_label(d)}")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return figure_png(fig, dpi)

