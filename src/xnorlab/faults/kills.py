"""Kills: SIGKILL a stage at the Nth call of a kill point, rerun it, and check what survived.

A training case passes when the rerun exits 0, resumes (or restarts) to the same per-epoch
history and final metrics as an unkilled run with the same seed, leaves exactly one FINISHED
MLflow run (earlier attempts KILLED), and holds each metric once per step. An export or report
case passes when every file left by the killed attempt is complete (equal to the unkilled
output) and the rerun writes the same bytes.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from xnorlab.faults.inject import COUNT_ENV, KILL_ENV
from xnorlab.faults.outcome import Tally
from xnorlab.faults.workspace import Proc, Sandbox, case_env, run_cmd

TRAINED_STORE = "mlflow-trained.db"  # the reference store before its report ran

# Values that depend on wall time or memory, not on the seed: not compared. The step's heap
# peak (train_mem_step_peak_bytes, glibc's mallinfo2) moves with allocator state by a few
# hundred bytes between identical runs; the counted tensor bytes are compared.
TIMED = ("seconds", "peak_rss", "epoch_seconds", "step_peak_bytes", "rss_rise")


def _timed(key: str) -> bool:
    return any(t in key for t in TIMED)


@dataclass
class Reference:
    """An unkilled run of each stage: its outputs and how often it passes each kill point."""

    sandbox: Sandbox
    counts: dict[str, dict[str, int]]
    metrics: dict[str, float]
    history: list[dict[str, float]]
    rows: dict[str, list[int]]  # metric key -> sorted steps
    values: dict[str, list[float]]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")}


def train_runs(uri: str) -> list[Any]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("xnorlab")
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], "tags.`xnorlab.kind` = 'train'")


def metric_rows(uri: str, run_id: str, keys: list[str]) -> tuple[dict, dict]:
    client = MlflowClient(uri)
    steps, values = {}, {}
    for key in keys:
        hist = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        steps[key] = [m.step for m in hist]
        values[key] = [m.value for m in hist]
    return steps, values


def _checked(proc: Proc, what: str) -> Proc:
    if proc.returncode != 0:
        raise RuntimeError(f"reference {what} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def make_reference(sb: Sandbox, report: bool = True) -> Reference:
    """Unkilled train, export and (if ``report``) report runs, counting kill-point calls."""
    counts: dict[str, dict[str, int]] = {"report": {}}
    stages = [("train", sb.train_cmd), ("export", sb.export_cmd)]
    for stage, cmd in stages + ([("report", sb.report_cmd)] if report else []):
        count_file = sb.root / f"counts-{stage}.json"
        _checked(run_cmd(cmd(), env=case_env(**{COUNT_ENV: count_file})), stage)
        counts[stage] = json.loads(count_file.read_text())
        if stage == "train":  # what report cases start from: no report run logged yet
            shutil.copy(sb.root / "mlflow.db", sb.root / TRAINED_STORE)
    (run,) = train_runs(sb.uri)
    keys = sorted(run.data.metrics)
    rows, values = metric_rows(sb.uri, run.info.run_id, keys)
    return Reference(sb, counts, json.loads((sb.out_dir / "metrics.json").read_text()),
                     json.loads((sb.out_dir / "history.json").read_text()), rows, values)


def check_training(ref: Reference, sb: Sandbox) -> tuple[list[str], int, int]:
    """Problems, records lost and records duplicated of a rerun training case."""
    problems: list[str] = []
    lost = dup = 0
    metrics_file = sb.out_dir / "metrics.json"
    if not metrics_file.exists():
        return ["no metrics.json after the rerun"], 1, 0
    metrics = json.loads(metrics_file.read_text())
    for key, value in ref.metrics.items():
        if not _timed(key) and metrics.get(key) != value:
            problems.append(f"metrics.json {key}={metrics.get(key)} != unkilled {value}")
    history = json.loads((sb.out_dir / "history.json").read_text())
    want = [h["epoch"] for h in ref.history]
    got = [h["epoch"] for h in history]
    if got != want:
        problems.append(f"history.json epochs {got} != {want}")
        lost += len(set(want) - set(got))
        dup += len(got) - len(set(got))
    for a, b in zip(history, ref.history, strict=False):
        diff = [k for k in b if not _timed(k) and a.get(k) != b[k]]
        if diff:
            problems.append(f"epoch {b['epoch']}: {diff} differ from the unkilled run")
    stale = [str(p.relative_to(sb.out_dir)) for p in sb.out_dir.rglob(".*.tmp")]
    if stale:
        problems.append(f"temporary files left after the rerun: {stale}")
    runs = train_runs(sb.uri)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    others = {r.info.status for r in runs} - {"FINISHED", "KILLED"}
    if len(finished) != 1 or others:
        problems.append(f"MLflow train runs: {sorted(r.info.status for r in runs)}")
    if finished:
        rows, values = metric_rows(sb.uri, finished[0].info.run_id, sorted(ref.rows))
        for key, steps in ref.rows.items():
            missing = len(steps) - len(set(steps) & set(rows[key]))
            extra = len(rows[key]) - len(set(rows[key]))
            if missing or extra:
                problems.append(f"MLflow {key}: steps {rows[key]} != {steps}")
            lost, dup = lost + missing, dup + extra
            if not _timed(key) and not missing and not extra and values[key] != ref.values[key]:
                problems.append(f"MLflow {key}: values differ from the unkilled run")
    return problems, lost, dup


def _half_written(folder: Path, ref_files: dict[str, bytes]) -> list[str]:
    """Files the killed attempt left that differ from a complete output."""
    if not folder.exists():
        return []
    return [name for name, data in _files(folder).items()
            if name in ref_files and data != ref_files[name]]


def kill_training(ref: Reference, root: Path, point: str, n: int) -> tuple[list[str], int, int]:
    sb = Sandbox(root, ref.sandbox.raw, ref.sandbox.train_args)
    killed = run_cmd(sb.train_cmd(), env=case_env(**{KILL_ENV: f"{point}:{n}"}))
    if not killed.killed:
        return [f"the attempt was not killed (exit {killed.returncode})"], 0, 0
    rerun = run_cmd(sb.train_cmd(inject=False), env=case_env())
    if rerun.returncode != 0:
        return [f"rerun failed ({rerun.returncode}): {rerun.stderr[-600:]}"], 1, 0
    return check_training(ref, sb)


def kill_output_stage(ref: Reference, root: Path, stage: str, point: str, n: int) -> list[str]:
    """Kill export or report; the files it leaves must be complete, the rerun's byte-equal."""
    sb = Sandbox(root, ref.sandbox.raw, ref.sandbox.train_args)
    root.mkdir(parents=True, exist_ok=True)
    if stage == "report":  # the report reads the reference's finished training run
        shutil.copy(ref.sandbox.root / TRAINED_STORE, root / "mlflow.db")
        cmd, folder, ref_folder = sb.report_cmd, root / "reports", ref.sandbox.root / "reports"
    else:  # the export reads the reference's checkpoint in place, so paths in it match
        sb_ref = ref.sandbox
        cmd = lambda **kw: sb_ref.export_cmd(out_dir=root / "packed", **kw)  # noqa: E731
        folder, ref_folder = root / "packed", sb_ref.root / "packed"
    ref_files = _files(ref_folder)
    killed = run_cmd(cmd(), env=case_env(**{KILL_ENV: f"{point}:{n}"}))
    if not killed.killed:
        return [f"the attempt was not killed (exit {killed.returncode})"]
    problems = [f"half-written after the kill: {f}" for f in _half_written(folder, ref_files)]
    rerun = run_cmd(cmd(inject=False), env=case_env())
    if rerun.returncode != 0:
        return [*problems, f"rerun failed ({rerun.returncode}): {rerun.stderr[-600:]}"]
    got = _files(folder)
    problems += [f"{name} differs from the unkilled output" for name in ref_files
                 if got.get(name) != ref_files[name]]
    return problems


# (stage, point) pairs a profile samples from, in the order of a run's life
PLAN = [("train", "step"), ("train", "checkpoint"), ("train", "metric"),
        ("train", "artifact"), ("train", "write"), ("export", "write"),
        ("export", "exactness"), ("report", "write"), ("report", "artifact")]


def run_kills(ref: Reference, work: Path, n_cases: int, rng: random.Random,
              tally: Tally | None = None, on_case: Any = None) -> Tally:
    """``n_cases`` kills, cycling through PLAN, each at a uniformly drawn call number;
    ``on_case()`` after each (the harness saves partial results)."""
    tally = tally if tally is not None else Tally()
    plan = [p for p in PLAN if ref.counts[p[0]].get(p[1])]
    for i in range(n_cases):
        stage, point = plan[i % len(plan)]
        n = rng.randint(1, ref.counts[stage][point])
        case = f"{stage}:{point}:{n}"
        root = work / f"kill-{i:02d}-{stage}-{point}"
        if stage == "train":
            problems, lost, dup = kill_training(ref, root, point, n)
        else:
            problems, lost, dup = kill_output_stage(ref, root, stage, point, n), 0, 0
            lost = sum("differs" in p or "half-written" in p for p in problems)
        tally.add(case, problems, lost=lost, duplicated=dup)
        if on_case:
            on_case()
    return tally
