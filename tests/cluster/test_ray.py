"""Sweeps as Ray tasks on a one-node Ray cluster on 127.0.0.1 (scripts/ray-local.sh).

`hydra/launcher=ray_cluster` (hydra-ray-launcher, installed by the script from
requirements-ray.txt) runs each job of a sweep as a Ray task; every job is an MLflow child of
one sweep parent run, and a job whose worker gets SIGTERM ends FAILED.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.cluster.test_slurm import alive, check_sweep_and_failed_job, runs
from tests.conftest import ROOT, write_tiny_mnist

pytestmark = [pytest.mark.slow, pytest.mark.cluster]
SCRIPT = ROOT / "scripts" / "ray-local.sh"
NOT_INSTALLABLE = 3  # the script's exit status when pip cannot install Ray


@pytest.fixture(scope="module")
def ray_cluster() -> dict[str, str]:
    """Environment (RAY_ADDRESS) of a cluster started for this module and stopped after it."""
    # Short: Ray's Unix socket paths under it must stay within 107 bytes.
    state = tempfile.mkdtemp(prefix="xnorlab-ray-", dir="/tmp")
    # 5 CPUs: the test's 5 one-CPU jobs run at once (oversubscribing a 2-core machine)
    env = {**os.environ, "RAY_DIR": state, "RAY_CPUS": "5", "PYTHON": sys.executable}
    up = subprocess.run([str(SCRIPT), "up"], env=env, capture_output=True, text=True,
                        timeout=600)
    if up.returncode == NOT_INSTALLABLE:
        pytest.skip(f"Ray is not installed and cannot be: {up.stderr.strip()[-500:]}")
    sid_file = Path(state, "session.pid")
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        env.update(line.split("=", 1) for line in up.stdout.split()[1:])  # the exports
        yield env
    finally:
        sid = int(sid_file.read_text()) if sid_file.exists() else None
        down = subprocess.run([str(SCRIPT), "down"], env=env, capture_output=True, text=True,
                              timeout=120)
        assert down.returncode == 0, down.stderr[-2000:]
        assert sid is None or not session_members(sid)  # no Ray process outlives `down`
        shutil.rmtree(state, ignore_errors=True)


def session_members(sid: int) -> list[int]:
    """Live processes of session `sid`."""
    members = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if os.getsid(pid) == sid and alive(pid):
                members.append(pid)
        except ProcessLookupError:
            pass
    return members


def sweep_cmd(tmp_path: Path, uri: str, *overrides: str) -> list[str]:
    return [
        sys.executable, "pipelines/train.py", "-m", "hydra/launcher=ray_cluster",
        f"hydra.sweep.dir={tmp_path}/sweep", "trainer=smoke", f"data.raw_dir={tmp_path}/raw",
        f"tracking.uri={uri}", f"tracking.artifact_root={tmp_path}/artifacts",
        f"out_dir={tmp_path}/models/${{run_name}}", *overrides,
    ]


def wait_for_training_worker(uri: str, proc: subprocess.Popen, timeout: float) -> int:
    """The Ray worker pid of the first run that is RUNNING and past its first epoch."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        running = [r for r in runs(uri) if r.data.tags.get("xnorlab.kind") == "train"
                   and r.info.status == "RUNNING"]
        if running and MlflowClient(uri).get_metric_history(running[0].info.run_id, "val_acc"):
            return int(running[0].data.tags["ray.worker_pid"])
        time.sleep(0.5)
    raise AssertionError("the job never started training")


def test_sweep_tasks_finish_under_one_parent_and_a_terminated_task_is_failed(ray_cluster,
                                                                              tmp_path):
    """Two multiruns side by side (to share the start-up time): a 4-job sweep that must end
    with 4 FINISHED children of one parent, and a long job whose worker gets SIGTERM."""
    sweep, long = tmp_path / "sweep", tmp_path / "long"
    for d in (sweep, long):
        write_tiny_mnist(d / "raw")
    sweep_uri, long_uri = (f"sqlite:///{d / 'mlflow.db'}" for d in (sweep, long))
    start = time.perf_counter()
    pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    stopped = subprocess.Popen(sweep_cmd(long, long_uri, "model=logreg", "quant=float",
                                         "trainer.max_epochs=100000"),
                               cwd=ROOT, env=ray_cluster, **pipe)
    swept = subprocess.Popen(sweep_cmd(sweep, sweep_uri, "model=logreg", "trainer.max_epochs=1",
                                       "quant=float,bnn,xnor,bc_det"),
                             cwd=ROOT, env=ray_cluster, **pipe)
    try:
        worker = wait_for_training_worker(long_uri, stopped, timeout=240)
        os.kill(worker, signal.SIGTERM)  # `kill <ray.worker_pid>`, as the README says
        _, stopped_err = stopped.communicate(timeout=120)
        _, swept_err = swept.communicate(timeout=600)
    finally:
        stopped.kill()
        swept.kill()
    print(f"4-job sweep and a stopped job on Ray: {time.perf_counter() - start:.1f} s")

    assert swept.returncode == 0, swept_err[-3000:]
    check_sweep_and_failed_job(sweep_uri, long_uri, "ray.task_id", stopped_err)
    assert stopped.returncode != 0  # the launcher reports the stopped job
