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

from omegaconf import DictConfig

from xnorlab.entry import entry_point
from xnorlab.schema import ConfigError, RunSuiteConfig, checked, suite_seeds

log = logging.getLogger("xnorlab.suite")
TRAIN = str(Path(__file__).with_name("train.py"))


def run_commands(cfg: DictConfig) -> list[tuple[str, list[str]]]:
    """(run name, command) for each run and distillation run of the suite, in order.

    Raises ConfigError when the config does not match its schema."""
    c = checked(cfg, RunSuiteConfig, "run_suite")
    suite, out_root = c["suite"], c["out_root"]
    seeds = ",".join(str(s) for s in suite_seeds(suite))
    commands = []
    for key, item in {**suite["runs"], **suite["distill_runs"]}.items():
        # A sweep over the seeds; `${seed}` is resolved by Hydra in each job.
        args = [
            "-m", f"seed={seeds}", f"run_name={key}", f"suite={suite['name']}",
            f"dataset={item['dataset']}", f"model={item['model']}", f"quant={item['quant']}",
            f"out_dir={out_root}/{key}/seed${{seed}}",
            f"metrics_file={c['metrics_root']}/{key}.json", *shlex.split(item["args"]),
        ]
        if item["teacher"]:
            args.append(
                f"distill.teacher={out_root}/{item['teacher']}/seed${{seed}}/checkpoints/best.ckpt")
        commands.append((key, [sys.executable, TRAIN, *args, *c["extra"]]))
    return commands


@entry_point("run_suite")
def main(cfg: DictConfig) -> None:
    try:
        commands = run_commands(cfg)
    except ConfigError as err:
        sys.exit(f"error: {err}")
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
