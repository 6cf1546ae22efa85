"""Two `dvc repro` at once in one checkout: the second must refuse clearly, nothing corrupted.

The case builds a tiny DVC project (no SCM) whose one stage writes its output slowly, starts a
first `dvc repro`, waits until the stage is running, and starts a second one. It survives when
the second exits non-zero saying the repository is locked, the first finishes, its output is
complete, `dvc status` is clean and a later `dvc repro` finds everything up to date.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

from xnorlab.faults.outcome import Tally
from xnorlab.faults.workspace import case_env, run_cmd

# the stage: writes `lines` lines, one per `pause` seconds, then renames into place
STAGE = """import os, sys, time
lines, pause = int(sys.argv[1]), float(sys.argv[2])
open("started", "w").close()
with open("out.txt.partial", "w") as f:
    for i in range(lines):
        f.write(f"line {i}\\n"); f.flush(); time.sleep(pause)
os.replace("out.txt.partial", "out.txt")
"""


def _dvc() -> str:
    return str(Path(sys.executable).with_name("dvc"))


def make_project(root: Path, lines: int, pause: float) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "slow.py").write_text(STAGE)
    stage = {"cmd": f"{sys.executable} slow.py {lines} {pause}", "deps": ["slow.py"],
             "outs": ["out.txt"]}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"slow": stage}}))
    init = run_cmd([_dvc(), "init", "--no-scm", "-q"], env=case_env(), cwd=root)
    if init.returncode != 0:
        raise RuntimeError(f"dvc init failed: {init.stderr}")


def two_repros(root: Path, lines: int = 10, pause: float = 0.5) -> tuple[list[str], str]:
    """Problems, and what the second `dvc repro` said."""
    make_project(root, lines, pause)
    env = case_env()
    first = subprocess.Popen([_dvc(), "repro"], cwd=root, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (root / "started").exists() and time.time() < deadline:
            time.sleep(0.05)
        second = run_cmd([_dvc(), "repro"], env=env, cwd=root, timeout=120)
        out, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    problems = []
    said = (second.stdout + second.stderr).lower()
    if second.returncode == 0:
        problems.append("the second `dvc repro` ran too (exit 0)")
    elif "lock" not in said:
        problems.append(f"the second refused without saying why: {said[-300:]}")
    if first.returncode != 0:
        problems.append(f"the first `dvc repro` failed: {err[-300:]}")
    want = "".join(f"line {i}\n" for i in range(lines))
    out_file = root / "out.txt"
    if not out_file.exists() or out_file.read_text() != want:
        problems.append("out.txt is missing or incomplete")
    status = run_cmd([_dvc(), "status"], env=env, cwd=root)
    if status.returncode != 0 or "up to date" not in status.stdout.lower():
        problems.append(f"`dvc status` after both: {status.stdout[-300:]}{status.stderr[-300:]}")
    again = run_cmd([_dvc(), "repro"], env=env, cwd=root)
    if again.returncode != 0 or "didn't change" not in again.stdout + again.stderr and \
            "up to date" not in (again.stdout + again.stderr).lower():
        problems.append(f"a later `dvc repro` reran or failed: {again.stdout[-300:]}")
    return problems, " ".join(said.split())[-300:]


def run_concurrency(work: Path, n_cases: int) -> Tally:
    tally = Tally()
    for i in range(n_cases):
        problems, said = two_repros(work / f"dvc-{i}", pause=0.3 + 0.2 * i)
        tally.add(f"two dvc repro at once #{i}", problems, lost=int(bool(problems)),
                  second_said=said)
    return tally
