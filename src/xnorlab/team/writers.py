"""Concurrent writers: N smoke training jobs at once (Hydra joblib launcher) against one store,
then an audit of what the store holds against what each job wrote to its own folder."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from mlflow.tracking import MlflowClient

from xnorlab.tracking import flatten, project_root

RUN_PREFIX = "team"


def sweep_command(n_jobs: int, raw_dir: Path, uri: str, work: Path, epochs: int) -> list[str]:
    """A multirun of `n_jobs` tiny logreg jobs (one per seed), all in parallel."""
    return [
        sys.executable, "pipelines/train.py", "-m", "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={n_jobs}", "trainer=smoke", "model=logreg", "quant=bnn",
        f"trainer.max_epochs={epochs}", f"seed=range(0,{n_jobs})",
        f"run_name={RUN_PREFIX}-s${{seed}}", f"out_dir={work}/models/${{run_name}}",
        f"data.raw_dir={raw_dir}", f"tracking.uri={uri}",
        f"tracking.artifact_root={work}/artifacts", "suite.name=team_bench",
        f"hydra.sweep.dir={work}/sweep",
    ]


def run_sweep(n_jobs: int, raw_dir: Path, uri: str, work: Path, epochs: int = 2,
              timeout: float = 900) -> dict[str, Any]:
    """Run the sweep; return its exit code, wall time and stderr tail."""
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.run(sweep_command(n_jobs, raw_dir, uri, work, epochs), cwd=project_root(),
                          capture_output=True, text=True, timeout=timeout)
    return {"returncode": proc.returncode, "wall_seconds": time.perf_counter() - start,
            "stderr_tail": proc.stderr[-3000:]}


@dataclass
class Tally:
    """Expected vs stored records of one kind."""

    expected: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0

    def add(self, expected: Counter, stored: Counter) -> None:
        self.expected += sum(expected.values())
        self.stored += sum(stored.values())
        self.lost += sum((expected - stored).values())
        self.duplicated += sum((stored - expected).values())


def _expected_metrics(out: Path) -> Counter:
    """(key, step) of every metric value a job logged: per epoch from history.json, once
    (step 0) for each final metric in metrics.json."""
    want: Counter = Counter()
    for row in json.loads((out / "history.json").read_text()):
        want.update((k, int(row["epoch"])) for k in row if k != "epoch")
    want.update((k, 0) for k in json.loads((out / "metrics.json").read_text()))
    return want


def _expected_artifacts(out: Path, checkpoint: bool) -> Counter:
    names = ["config.yaml", "metrics.json", "history.json", "curves.png", "confusion.png"]
    files = {n: (out / n).stat().st_size for n in names}
    if checkpoint:
        files["checkpoints/best.ckpt"] = (out / "checkpoints" / "best.ckpt").stat().st_size
    return Counter(files.items())


def _stored_artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> Counter:
    found: Counter = Counter()
    for f in client.list_artifacts(run_id, path):
        if f.is_dir:
            found += _stored_artifacts(client, run_id, f.path)
        else:
            found[(f.path, f.file_size)] += 1
    return found


def audit(uri: str, work: Path, n_jobs: int, experiment: str = "xnorlab") -> dict[str, Any]:
    """Count runs, params, metric steps and artifacts in the store against the jobs' folders.

    Lost = expected but not stored; duplicated = stored more often than logged (multisets, so a
    metric step logged twice counts once as duplicated). Artifacts match on path and size.
    """
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
    names = [f"{RUN_PREFIX}-s{i}" for i in range(n_jobs)]
    by_name: dict[str, list] = {}
    for r in runs:
        by_name.setdefault(r.info.run_name, []).append(r)
    parents = [r for r in runs if r.data.tags.get("xnorlab.kind") == "sweep"]
    tallies = {k: Tally() for k in ("runs", "params", "metric_steps", "artifacts")}
    job_runs = [r.info.run_name for r in runs if r.info.run_name in names]
    tallies["runs"].add(Counter(names + ["sweep-parent"]),
                        Counter(job_runs + ["sweep-parent"] * len(parents)))
    failed = []
    for name in names:
        out = work / "models" / name
        stored = by_name.get(name, [])
        if not stored or not (out / "metrics.json").exists():
            failed.append(name)
            continue
        run = stored[0]
        if run.info.status != "FINISHED":
            failed.append(name)
        cfg = yaml.safe_load((out / "config.yaml").read_text())
        tallies["params"].add(Counter(flatten(cfg).keys()), Counter(run.data.params.keys()))
        stored_steps: Counter = Counter()
        for key in run.data.metrics:
            history = client.get_metric_history(run.info.run_id, key)
            stored_steps.update((key, m.step) for m in history)
        tallies["metric_steps"].add(_expected_metrics(out), stored_steps)
        tallies["artifacts"].add(_expected_artifacts(out, cfg["tracking"]["log_checkpoint"]),
                                 _stored_artifacts(client, run.info.run_id))
    parent_ids = {p.info.run_id for p in parents}
    nested = sum(r.data.tags.get("mlflow.parentRunId") in parent_ids
                 for name in names for r in by_name.get(name, []))
    return {
        **{k: vars(t) for k, t in tallies.items()},
        "failed_jobs": failed,
        "sweep_parents": len(parents),
        "jobs_nested_under_parent": nested,
    }
