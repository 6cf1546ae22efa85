"""Sweeps as SLURM jobs on a one-node cluster on 127.0.0.1 (scripts/slurm-local.sh).

`hydra/launcher=submitit_slurm` turns each job of a sweep into a SLURM job; every job is an
MLflow child of one sweep parent run, and a job cancelled with `scancel` ends FAILED.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import ROOT, write_tiny_mnist

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
SCRIPT = ROOT / "scripts" / "slurm-local.sh"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> dict[str, str]:
    """Environment (SLURM_CONF) of a cluster started for this module and stopped after it."""
    if shutil.which("slurmctld") is None and (os.geteuid() != 0 or not shutil.which("apt-get")):
        pytest.skip("slurm-wlm is not installed and cannot be (needs root and apt-get)")
    # 5 CPUs: the test's 5 one-CPU jobs run at once (oversubscribing a 2-core machine)
    env = {**os.environ, "CLUSTER_DIR": str(tmp_path_factory.mktemp("cluster")),
           "SLURM_CPUS": "5"}
    up = subprocess.run([str(SCRIPT), "up"], env=env, capture_output=True, text=True,
                        timeout=900)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        env["SLURM_CONF"] = up.stdout.strip().removeprefix("export SLURM_CONF=")
        yield env
    finally:
        pids = [Path(env["CLUSTER_DIR"], f"{d}.pid")
                for d in ("slurmctld", "slurmd", "munge/munged")]
        pids = [int(p.read_text()) for p in pids if p.exists()]
        down = subprocess.run([str(SCRIPT), "down"], env=env, capture_output=True, text=True,
                              timeout=120)
        assert down.returncode == 0, down.stderr[-2000:]
        assert not [pid for pid in pids if alive(pid)]  # no daemon outlives `down`


def alive(pid: int) -> bool:
    """Running (a zombie is dead: this machine's init may reap it a little later)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def sweep_cmd(tmp_path: Path, uri: str, *overrides: str) -> list[str]:
    return [
        sys.executable, "pipelines/train.py", "-m", "hydra/launcher=submitit_slurm",
        f"hydra.launcher.submitit_folder={tmp_path}/submitit/%j", "hydra.launcher.timeout_min=10",
        "hydra.launcher.cpus_per_task=1", f"hydra.sweep.dir={tmp_path}/sweep",
        "trainer=smoke", f"data.raw_dir={tmp_path}/raw", f"tracking.uri={uri}",
        f"tracking.artifact_root={tmp_path}/artifacts", f"out_dir={tmp_path}/models/${{run_name}}",
        *overrides,
    ]


def runs(uri: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("xnorlab")
    return client.search_runs([exp.experiment_id]) if exp else []


def check_sweep_and_failed_job(sweep_uri: str, long_uri: str, job_tag: str, err: str) -> None:
    """The 4-job logreg sweep's runs all FINISHED under one parent, each its own cluster job
    (distinct `job_tag`), and the one stopped job's run ended FAILED (not lost)."""
    found = runs(sweep_uri)
    (parent,) = [r for r in found if r.data.tags.get("xnorlab.kind") == "sweep"]
    children = [r for r in found if r.data.tags.get("xnorlab.kind") == "train"]
    assert sorted(c.info.run_name for c in children) == [
        "mnist-logreg-bc_det", "mnist-logreg-bnn", "mnist-logreg-float", "mnist-logreg-xnor"]
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent.info.run_id}
    assert {c.info.status for c in children} == {"FINISHED"}
    assert len({c.data.tags[job_tag] for c in children}) == 4  # a cluster job each
    (child,) = [r for r in runs(long_uri) if r.data.tags.get("xnorlab.kind") == "train"]
    assert child.info.status == "FAILED", err[-2000:]
    assert child.info.end_time is not None


def wait_for_training_job(uri: str, proc: subprocess.Popen, timeout: float) -> str:
    """The SLURM job id of the first run that is RUNNING and past its first epoch."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        running = [r for r in runs(uri) if r.data.tags.get("xnorlab.kind") == "train"
                   and r.info.status == "RUNNING"]
        if running and MlflowClient(uri).get_metric_history(running[0].info.run_id, "val_acc"):
            return running[0].data.tags["slurm.job_id"]
        time.sleep(0.5)
    raise AssertionError("the job never started training")


def test_sweep_jobs_finish_under_one_parent_and_a_cancelled_job_is_failed(slurm, tmp_path):
    """Two multiruns side by side (to share the start-up time): a 4-job sweep that must end
    with 4 FINISHED children of one parent, and a long job cancelled with scancel."""
    sweep, long = tmp_path / "sweep", tmp_path / "long"
    for d in (sweep, long):
        write_tiny_mnist(d / "raw")
    sweep_uri, long_uri = (f"sqlite:///{d / 'mlflow.db'}" for d in (sweep, long))
    start = time.perf_counter()
    pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    cancelled = subprocess.Popen(sweep_cmd(long, long_uri, "model=logreg", "quant=float",
                                           "trainer.max_epochs=100000"),
                                 cwd=ROOT, env=slurm, **pipe)
    swept = subprocess.Popen(sweep_cmd(sweep, sweep_uri, "model=logreg", "trainer.max_epochs=1",
                                       "quant=float,bnn,xnor,bc_det"),
                             cwd=ROOT, env=slurm, **pipe)
    try:
        job = wait_for_training_job(long_uri, cancelled, timeout=240)
        subprocess.run(["scancel", job], env=slurm, check=True)
        _, cancelled_err = cancelled.communicate(timeout=120)
        _, swept_err = swept.communicate(timeout=600)
    finally:
        cancelled.kill()
        swept.kill()
    print(f"4-job sweep and a cancelled job on SLURM: {time.perf_counter() - start:.1f} s")

    assert swept.returncode == 0, swept_err[-3000:]
    check_sweep_and_failed_job(sweep_uri, long_uri, "slurm.job_id", cancelled_err)
    assert cancelled.returncode != 0  # the launcher reports the cancelled job
