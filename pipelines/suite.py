"""Run every training run of a suite, outside DVC (for suites other than the default one).

    python pipelines/suite.py suite=paper
Runs are trained one after another, each in its own process; a run that fails is reported and
the others go on. Rerunning resumes unfinished runs from their last checkpoint.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

log = logging.getLogger("xnorlab.suite")
TRAIN = str(Path(__file__).with_name("train.py"))


def run_commands(cfg: DictConfig) -> list[tuple[str, list[str]]]:
    """(run name, command) for each run and distillation run of the suite, in order."""
    commands = []
    runs = {**cfg.suite.runs, **cfg.suite.get("distill_runs", {})}
    for key, item in runs.items():
        args = [
            f"run_name={key}", f"suite={cfg.suite.name}", f"dataset={item.dataset}",
            f"model={item.model}", f"quant={item.quant}", f"out_dir={cfg.out_root}/{key}",
            f"metrics_file={cfg.metrics_root}/{key}.json", *shlex.split(item.get("args", "")),
        ]
        if item.get("teacher"):
            args.append(f"distill.teacher={cfg.out_root}/{item.teacher}/checkpoints/best.ckpt")
        commands.append((key, [sys.executable, TRAIN, *args, *cfg.extra]))
    return commands


@hydra.main(config_path="../conf", config_name="run_suite", version_base="1.3")
def main(cfg: DictConfig) -> None:
    commands = run_commands(cfg)
    failed = []
    for i, (key, cmd) in enumerate(commands, 1):
        log.info("[%d/%d] %s", i, len(commands), key)
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(key)
            log.error("%s failed; going on with the others", key)
    if failed:
        sys.exit(f"error: {len(failed)} of {len(commands)} runs failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
