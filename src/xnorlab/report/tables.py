"""The three tables (error; cost and savings; trade-off) built from run records (renderings:
:mod:`xnorlab.report.render`).

A table is display cells (text + footnote numbers + the run id behind the value) plus tidy
records (raw numbers, one per run) for CSV and report.json. A value that is missing is an em
dash with a footnote saying why; a blank cell means "not part of the suite / not applicable".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from xnorlab.report.benchmark import Benchmark
from xnorlab.report.cells import (
    DASH,
    Cell,
    Column,
    Notes,
    Table,
    fmt_bytes,
    fmt_count,
    fmt_fixed,
    fmt_ips,
    fmt_ratio,
)
from xnorlab.report.collect import (
    MODELS,
    Record,
    dataset_label,
    dataset_rank,
    method_rank,
    model_label,
    order_key,
    rank,
)
from xnorlab.report.references import REFERENCES, Reference, references_for
from xnorlab.stats import paired_interval


def _missing(record: Record, notes: Notes) -> Cell:
    return Cell(DASH, [notes.add(record.problem or f"`{record.slot.key}`: no finished run")])


def metric_cell(record: Record, metric: str, fmt: Callable[[float], str], notes: Notes) -> Cell:
    """The logged value of `metric`, or a dash with a note saying why there is none."""
    if not record.finished:
        return _missing(record, notes)
    value = record.metrics.get(metric)
    if value is None:
        return Cell(DASH, [notes.add(
            f"`{record.slot.key}` (run {record.short_id}) logged no `{metric}`")])
    return Cell(fmt(value), run_id=record.run_id)


def seed_cell(record: Record, metric: str, digits: int, notes: Notes) -> Cell:
    """Mean +- standard deviation over seeds, and n: ``1.92 ± 0.05 (3)``; a single seed shows
    its value alone. A configuration some of whose seeds did not finish gets a note."""
    cell = metric_cell(record, metric, fmt_fixed(digits), notes)
    if cell.text == DASH:
        return cell
    marks = [notes.add(record.problem)] if record.problem else []
    if record.n > 1:
        sd = record.std.get(metric, 0.0)
        return Cell(f"{cell.text} ± {sd:.{digits}f} ({record.n})", marks, run_id=record.run_id)
    return Cell(cell.text, marks, run_id=record.run_id)


BUDGET_PARAMS = {"epochs": "trainer.max_epochs", "batch_size": "data.batch_size",
                 "lr": "optim.lr", "lr_end": "optim.lr_end"}


def budget(record: Record) -> dict[str, str]:
    """A run's training budget and schedule, from its logged params."""
    return {k: record.params.get(p, "?") for k, p in BUDGET_PARAMS.items()}


def _budget_text(b: dict[str, str]) -> str:
    return (f"{b['epochs']} epochs, batch {b['batch_size']}, Adam lr {b['lr']} decaying "
            f"exponentially to {b['lr_end']}")


def budget_notes(records: list[Record], datasets: list[str]) -> str:
    """One sentence per architecture x dataset: the budget its methods share, or each method's
    budget where they differ (said so, since the comparison is then unequal)."""
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in _by_architecture([r for r in records if r.finished], datasets):
        if r.slot.model != "kmeans":
            groups.setdefault((r.slot.model, r.slot.dataset), []).append(r)
    parts = []
    for (model, dataset), recs in groups.items():
        where = f"{model_label(model)} on {dataset_label(dataset)}"
        budgets = {tuple(budget(r).items()) for r in recs}
        if len(budgets) == 1:
            parts.append(f"{where}: {_budget_text(budget(recs[0]))} for every method.")
        else:
            each = "; ".join(f"{r.slot.method_label} {_budget_text(budget(r))}" for r in recs)
            parts.append(f"{where} (UNEQUAL budgets): {each}.")
    return " ".join(parts)


def _status(record: Record) -> tuple[str, str]:
    return ("FINISHED", "") if record.finished else ("missing", record.problem or "")


def _base_fields(record: Record) -> dict[str, Any]:
    status, note = _status(record)
    s = record.slot
    return {"dataset": s.dataset, "model": s.model, "method": s.quant, "distilled": s.distilled,
            "run_name": s.key, "run_id": record.run_id, "status": status, "note": note}


BASE_FIELDS = ["dataset", "model", "method", "distilled", "run_name", "run_id", "status", "note"]


def _by_architecture(records: Iterable[Record], datasets: list[str]) -> list[Record]:
    """Grouped by architecture, then dataset, method."""
    def key(r: Record) -> tuple:
        return (rank(MODELS, r.slot.model), order_key(r.slot, datasets))
    return sorted(records, key=key)


# ---------------------------------------------------------------- Table 1


def _ref_note(refs: list[Reference]) -> str:
    r = refs[0]
    variants = " / ".join(x.variant for x in refs)
    return (f"Published: {r.paper}, {dataset_label(r.dataset)}, {variants}; {r.arch_note}, "
            "not our architecture or training budget.")


def table1(records: list[Record], datasets: list[str], suite: str) -> Table:
    """Test error (%): rows (architecture, method), a column per dataset, and the published
    figure beside ours where the paper reports one for that method and architecture kind."""
    notes = Notes()
    ds_order = sorted({r.slot.dataset for r in records}, key=lambda d: dataset_rank(d, datasets))
    # rows: (model, method[, run name when two runs of a row share a dataset])
    groups: dict[tuple[str, str], list[Record]] = {}
    for r in records:
        groups.setdefault((r.slot.model, r.slot.method), []).append(r)
    rows_recs: list[tuple[tuple, list[Record]]] = []
    for recs in groups.values():
        slot = recs[0].slot
        base = (rank(MODELS, slot.model), slot.distilled, method_rank(slot.quant))
        if len({r.slot.dataset for r in recs}) == len(recs):
            rows_recs.append(((*base, ""), recs))
        else:  # several runs for one cell: one row per run name
            rows_recs += [((*base, r.slot.key), [r]) for r in recs]
    rows_recs.sort(key=lambda x: x[0])

    def refs(rec: Record, dataset: str) -> list[Reference]:
        s = rec.slot
        return [] if s.distilled else references_for(s.quant, dataset, s.model)

    paper_cols = {d for d in ds_order for _, recs in rows_recs if refs(recs[0], d)}
    columns = [Column("Architecture", "l"), Column("Method", "l")]
    for d in ds_order:
        columns.append(Column(dataset_label(d)))
        if d in paper_cols:
            columns.append(Column(f"{dataset_label(d)} (paper)"))
    rows, out_records = [], []
    for (*_, variant), recs in rows_recs:
        slot = recs[0].slot
        label = slot.method_label + (f" (`{variant}`)" if variant else "")
        row = [Cell(model_label(slot.model)), Cell(label)]
        for d in ds_order:
            rec = next((r for r in recs if r.slot.dataset == d), None)
            row.append(seed_cell(rec, "test_error_pct", 2, notes) if rec else Cell())
            found = refs(recs[0], d)
            if d in paper_cols:
                row.append(Cell(" / ".join(f"{x.error_pct:.2f}" for x in found),
                                [notes.add(_ref_note(found))] if found else []))
            if rec is not None:
                out_records.append({
                    **_base_fields(rec),
                    "test_error_pct": rec.metric("test_error_pct"),
                    "test_error_pct_std": rec.std.get("test_error_pct") if rec.finished else None,
                    "n_seeds": rec.n,
                    "seeds": " ".join(str(x.seed) for x in rec.seeds),
                    "seed_run_ids": " ".join(x.run_id for x in rec.seeds),
                    **(budget(rec) if rec.finished else dict.fromkeys(BUDGET_PARAMS)),
                    "test_acc": rec.metric("test_acc"),
                    "published_error_pct": " / ".join(f"{x.error_pct:.2f}" for x in found),
                    "published_source": "; ".join(f"{x.paper} {x.variant}" for x in found),
                })
        rows.append(row)
    papers: dict[str, dict[str, list[str]]] = {}
    for r in REFERENCES:
        papers.setdefault(r.paper, {}).setdefault(dataset_label(r.dataset), []).append(
            f"{r.error_pct:.2f}% ({r.variant})")
    listed = " ".join(
        f"{paper}: " + "; ".join(f"{d} {', '.join(v)}" for d, v in by_ds.items()) + "."
        for paper, by_ds in papers.items())
    caption = (f"Test error (%) of the best-validation checkpoint, suite `{suite}`, as mean ± "
               "standard deviation over seeds (n seeds); lower is better. Budgets: "
               f"{budget_notes(records, datasets)}")
    recipe = ("Recipe differences kept because the papers prescribe them: stochastic weight "
              "binarization (BinaryConnect stoch., BNN stoch.) starts the latent weights "
              "U(-1, 1) and scales each binary layer's learning rate by its Glorot factor "
              "(BinaryConnect, 2015); binarized networks clip latent weights to [-1, 1] after "
              "each step.")
    return Table(
        "table1", "Table 1: test error (%)", caption,
        columns, rows, notes,
        BASE_FIELDS + ["test_error_pct", "test_error_pct_std", "n_seeds", "seeds",
                       "seed_run_ids", *BUDGET_PARAMS, "test_acc", "published_error_pct",
                       "published_source"],
        out_records, cell_ids=True,
        extra_md=(f"{recipe} Published test errors, each from its paper's own architecture and "
                  f"training recipe: {listed}"),
    )


# ---------------------------------------------------------------- speed cells


def _threads(n: int) -> str:
    return f"{n} thread" + ("s" if n != 1 else "")


class SpeedCells:
    """Speed columns of Tables 2 and 3 from the benchmark (or dashes and a note without it)."""

    def __init__(self, bench: Benchmark | None, bench_problem: str | None):
        self.bench, self.problem = bench, bench_problem
        self.batches = bench.batches if bench else []

    def columns(self, title: Callable[[int | None], str]) -> list[Column]:
        return [Column(title(b)) for b in self.batches] or [Column(title(None))]

    def fields(self, *prefixes: str) -> list[str]:
        return [f"{p}_b{b}" for b in self.batches for p in prefixes]

    def applies(self, record: Record) -> bool:
        """Whether speed cells of this record should hold something (else they are blank):
        binarized runs always; float runs only when benchmarked (float throughput)."""
        if record.slot.binarized or not record.finished or self.bench is None:
            return True
        return self.bench.entry(record.slot.key) is not None

    def entry_notes(self, record: Record, notes: Notes) -> tuple[dict[str, Any] | None,
                                                                 list[int]]:
        """The benchmark entry of the record's run (None: why not, as notes) and the notes
        that qualify its figures."""
        if not record.finished:
            return None, _missing(record, notes).notes
        if self.bench is None:
            return None, [notes.add(f"Speed: {self.problem}.")]
        entry = self.bench.entry(record.slot.key)
        if entry is None:
            return None, [notes.add(f"`{record.slot.key}` is not in `{self.bench.path}`.")]
        marks = []
        measured = entry.get("train_run_id")
        if measured and measured != record.run_id:
            marks.append(notes.add(
                f"`{record.slot.key}`: the benchmarked model comes from run {measured[:8]}, "
                f"not from the run reported here ({record.short_id})."))
        exact = entry.get("exact") or {}
        if exact.get("mismatched_predictions"):
            marks.append(notes.add(
                f"`{record.slot.key}`: the packed engine disagreed with PyTorch on "
                f"{exact['mismatched_predictions']} of {exact.get('n_images', '?')} images."))
        return entry, marks

    def cells(self, record: Record, notes: Notes, show: str) -> list[Cell]:
        """`show`: "throughput" (float -> packed img/s (speedup)) or "speedup"."""
        n = max(1, len(self.batches))
        if not self.applies(record):
            return [Cell() for _ in range(n)]
        entry, marks = self.entry_notes(record, notes)
        if entry is None:
            return [Cell(DASH, marks) for _ in range(n)]
        speeds = self.bench.speeds(record.slot.key)
        out = []
        for b in self.batches:
            sp = speeds[b]
            if not record.slot.binarized:  # float runs have no packed engine
                shown = sp.float_ips is not None and show == "throughput"
                out.append(Cell(f"{fmt_ips(sp.float_ips)} (float)" if shown else "",
                                marks if shown else [], run_id=record.run_id))
                continue
            cell_marks = list(marks)
            if sp.speedup is None:
                what = ("PyTorch float32" if sp.float_ips is None else
                        sp.packed_engine or "packed engine")
                cell_marks.append(notes.add(
                    f"`{record.slot.key}`: no {what} result at batch {b}, "
                    f"{_threads(self.bench.threads)}."))
            if show == "speedup":
                text = fmt_ratio(sp.speedup) if sp.speedup is not None else DASH
            else:
                f = fmt_ips(sp.float_ips) if sp.float_ips is not None else DASH
                p = fmt_ips(sp.packed_ips) if sp.packed_ips is not None else DASH
                text = f"{f} → {p}" + (f" ({fmt_ratio(sp.speedup)})" if sp.speedup else "")
            out.append(Cell(text, cell_marks, run_id=record.run_id))
        return out

    def raw(self, record: Record, *what: str) -> dict[str, Any]:
        """CSV values: float/packed images/s and speedup per batch size."""
        out: dict[str, Any] = {}
        speeds = (self.bench.speeds(record.slot.key)
                  if self.bench and record.finished and self.bench.entry(record.slot.key)
                  else {})
        for b in self.batches:
            sp = speeds.get(b)
            values = {"float_images_per_s": sp.float_ips if sp else None,
                      "packed_images_per_s": sp.packed_ips if sp else None,
                      "speedup": sp.speedup if sp else None}
            out.update({f"{k}_b{b}": values[k] for k in what})
        return out

    def note(self) -> str:
        if self.bench is None:
            return ""
        return (f"Speed: median images/s at {_threads(self.bench.threads)} on {self.bench.cpu} "
                f"(`{self.bench.path}`); packed = the fastest packed engine measured "
                "(packed_fast, else packed_numpy); speedup = packed / PyTorch float32 "
                "of the same network at the same batch size.")


# ---------------------------------------------------------------- Table 2


def table2(records: list[Record], datasets: list[str], speed: SpeedCells) -> Table:
    """Cost and savings per run, grouped by architecture."""
    notes = Notes()
    has_bench = speed.bench is not None
    columns = [Column("Architecture", "l"), Column("Dataset", "l"), Column("Method", "l"),
               Column("Run", "l", latex=False), Column("Params"), Column("Float32 size"),
               Column("1-bit size"), Column("Compression"), Column("s / epoch"),
               Column("Peak RSS (MB)"), Column("Saved for backward")]
    if has_bench:
        columns.append(Column("Packed file"))
    columns += speed.columns(lambda b: "img/s float → packed (speedup)" if b is None
                             else f"img/s b={b}")
    rows, out_records = [], []
    for rec in _by_architecture(records, datasets):
        s = rec.slot
        row = [Cell(model_label(s.model)), Cell(dataset_label(s.dataset)), Cell(s.method_label),
               Cell(f"`{rec.short_id}`" if rec.finished else DASH)]
        row += [metric_cell(rec, "params_total", fmt_count, notes),
                metric_cell(rec, "model_bytes_fp32", fmt_bytes, notes)]
        if s.binarized or not rec.finished:
            row += [metric_cell(rec, "model_bytes_1bit", fmt_bytes, notes),
                    metric_cell(rec, "compression_ratio", fmt_ratio, notes)]
        else:
            row += [Cell(), Cell()]
        row += [metric_cell(rec, "epoch_seconds_mean", fmt_fixed(2), notes),
                metric_cell(rec, "peak_rss_mb", fmt_fixed(0), notes)]
        # train/memory.py: bytes autograd keeps for one step (K-means has no backward).
        row.append(metric_cell(rec, "train_mem_saved_bytes", fmt_bytes, notes)
                   if s.model != "kmeans" else Cell())
        entry = speed.bench.entry(s.key) if has_bench and rec.finished else None
        if has_bench:
            if entry is not None and entry.get("packed_bytes") is not None:
                row.append(Cell(fmt_bytes(entry["packed_bytes"]), run_id=rec.run_id))
            elif s.binarized or not rec.finished:
                row.append(Cell(DASH, speed.entry_notes(rec, notes)[1] or [notes.add(
                    f"`{s.key}`: no packed_bytes in `{speed.bench.path}`.")]))
            else:
                row.append(Cell())
        row += speed.cells(rec, notes, "throughput")
        rows.append(row)
        metrics = {m: rec.metric(m) for m in
                   ("params_total", "params_binary", "model_bytes_fp32", "model_bytes_1bit",
                    "compression_ratio", "epoch_seconds_mean", "peak_rss_mb",
                    "train_mem_saved_bytes")}
        if not s.binarized:
            metrics.update(params_binary=None, model_bytes_1bit=None, compression_ratio=None)
        out_records.append({
            **_base_fields(rec), **metrics,
            "packed_bytes": entry.get("packed_bytes") if entry else None,
            "bench_threads": speed.bench.threads if has_bench else None,
            **speed.raw(rec, "float_images_per_s", "packed_images_per_s", "speedup"),
        })
    caption = ("Cost and savings per run: parameters, model size at 32 bits and with binary "
               "weights at 1 bit (float runs are stored at 32 bits, so those cells are blank), "
               "mean training time per epoch, peak RSS while training, bytes saved for "
               "backward by one training step at the run's batch size (train_mem_saved_bytes).")
    if speed.note():
        caption += " " + speed.note()
    return Table(
        "table2", "Table 2: cost and savings", caption, columns, rows, notes,
        BASE_FIELDS + ["params_total", "params_binary", "model_bytes_fp32", "model_bytes_1bit",
                       "compression_ratio", "epoch_seconds_mean", "peak_rss_mb", "packed_bytes",
                       "bench_threads"]
        + speed.fields("float_images_per_s", "packed_images_per_s", "speedup"),
        out_records,
    )


# ---------------------------------------------------------------- Table 3


def baseline_of(record: Record, records: list[Record]) -> Record | None:
    """The float run of the same dataset and model (a listed, undistilled one first)."""
    candidates = [r for r in records if r.slot.dataset == record.slot.dataset
                  and r.slot.model == record.slot.model and r.slot.quant == "float"
                  and not r.slot.distilled]
    candidates.sort(key=lambda r: (not r.finished, not r.slot.listed, r.slot.key))
    return candidates[0] if candidates else None


def table3(records: list[Record], datasets: list[str], speed: SpeedCells) -> Table:
    """Each binarized run against its float baseline: accuracy lost, memory and time saved."""
    notes = Notes()
    columns = [Column("Architecture", "l"), Column("Dataset", "l"), Column("Method", "l"),
               Column("Runs", "l", latex=False), Column("Error (%)"),
               Column("Float error (%)"), Column("Accuracy lost (points)"),
               Column("Memory saved")]
    columns += speed.columns(lambda b: "Speedup" if b is None else f"Speedup b={b}")
    rows, out_records = [], []
    for rec in _by_architecture([r for r in records if r.slot.binarized], datasets):
        s = rec.slot
        base = baseline_of(rec, records)
        ids = f"`{rec.short_id}`" if rec.finished else DASH
        ids += f" vs `{base.short_id}`" if base is not None and base.finished else f" vs {DASH}"
        row = [Cell(model_label(s.model)), Cell(dataset_label(s.dataset)), Cell(s.method_label),
               Cell(ids), metric_cell(rec, "test_error_pct", fmt_fixed(2), notes)]
        if base is None:
            no_base = Cell(DASH, [notes.add(
                f"No float run of {model_label(s.model)} on {dataset_label(s.dataset)} in the "
                "suite to compare with.")])
            row += [no_base, no_base, no_base]
            lost = half = saved = None
        else:
            row.append(metric_cell(base, "test_error_pct", fmt_fixed(2), notes))
            lost, half = _accuracy_lost(rec, base, notes, row)
            saved = _combine(rec, base, "model_bytes_1bit", "model_bytes_fp32",
                             lambda b, a: b / a if a else None, fmt_ratio, notes, row)
        row += speed.cells(rec, notes, "speedup")
        rows.append(row)
        out_records.append({
            **_base_fields(rec),
            "baseline_run_name": base.slot.key if base else None,
            "baseline_run_id": base.run_id if base else None,
            "test_error_pct": rec.metric("test_error_pct"),
            "baseline_test_error_pct": base.metric("test_error_pct") if base else None,
            "accuracy_lost_points": lost, "accuracy_lost_ci95_half_width": half,
            "memory_saved_x": saved,
            **speed.raw(rec, "speedup"),
        })
    caption = ("Trade-off of each binarized run against the float run of the same architecture "
               "and dataset: accuracy lost (percentage points of test accuracy, negative = "
               "gained; mean over the seeds both trained ± the half-width of its paired 95% "
               "Student-t interval, seed s of the method against seed s of the float run), "
               "memory saved (float32 model bytes / 1-bit model bytes) and inference "
               "time saved (speedup of the packed engine over PyTorch float32).")
    if speed.note():
        caption += " " + speed.note()
    return Table(
        "table3", "Table 3: what binarization costs and saves", caption, columns, rows, notes,
        BASE_FIELDS + ["baseline_run_name", "baseline_run_id", "test_error_pct",
                       "baseline_test_error_pct", "accuracy_lost_points",
                       "accuracy_lost_ci95_half_width", "memory_saved_x"]
        + speed.fields("speedup"),
        out_records,
    )


def _accuracy_lost(rec: Record, base: Record, notes: Notes,
                   row: list[Cell]) -> tuple[float | None, float | None]:
    """Append the accuracy lost (points) with its paired 95% interval over common seeds; with
    fewer than two common seeds, the difference of the means without an interval."""
    pair = (paired_interval(base.seed_values("test_acc"), rec.seed_values("test_acc"))
            if rec.finished and base.finished else None)
    if pair is None:
        return _combine(rec, base, "test_acc", "test_acc", lambda b, a: 100 * (b - a),
                        fmt_fixed(2), notes, row), None
    mean, half, _ = (100 * pair[0], 100 * pair[1], pair[2])
    row.append(Cell(f"{mean:.2f} ± {half:.2f}", run_id=rec.run_id))
    return mean, half


def _combine(rec: Record, base: Record, metric: str, base_metric: str,
             op: Callable[[float, float], float | None], fmt: Callable[[float], str],
             notes: Notes, row: list[Cell]) -> float | None:
    """Append a cell computed from a metric of the binarized run and one of its baseline."""
    marks = []
    for r, m in ((base, base_metric), (rec, metric)):
        cell = metric_cell(r, m, str, notes)
        if cell.text == DASH:
            marks += cell.notes
    if marks:
        row.append(Cell(DASH, sorted(set(marks))))
        return None
    value = op(base.metrics[base_metric], rec.metrics[metric])
    row.append(Cell(fmt(value) if value is not None else DASH, run_id=rec.run_id))
    return value
