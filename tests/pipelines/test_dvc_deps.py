"""The train and distill stages of dvc.yaml depend on every project file a run reads.

A smoke training runs in a subprocess that records, through an audit hook, every file it opens
and every module it imports; each one inside the project must lie under a declared dependency
of the stage, so a change to it makes `dvc repro` retrain.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_tiny_mnist

pytestmark = pytest.mark.slow  # trains models or runs subprocesses

# Read by a run, yet deliberately not a dependency, each for a stated reason.
NOT_DEPENDENCIES = {
    # Only the suite's name enters a run's config, so adding a run must not retrain the others.
    "conf/suite/default.yaml": "the suite's run list is not part of a run's config",
}

TRACER = r"""
import json, os, runpy, sys
seen = set()
def hook(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        seen.add(os.path.abspath(os.fsdecode(args[0])))
sys.addaudithook(hook)
out, script, *argv = sys.argv[1:]
sys.argv = [script, *argv]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    seen.update(os.path.abspath(m.__file__) for m in list(sys.modules.values())
                if getattr(m, "__file__", None))
    with open(out, "w") as f:
        json.dump(sorted(seen), f)
"""


def stage_deps(stage_name: str) -> set[str]:
    """The dependencies of one expanded stage, as paths relative to the project root."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        stage = next(s for s in repo.index.stages if s.addressing == stage_name)
        return {str(Path(d.fs_path).relative_to(ROOT)) for d in stage.deps}


def uncovered(files: set[str], deps: set[str]) -> set[str]:
    """The files that lie under no dependency (a dependency is a file or a folder)."""
    return {f for f in files
            if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)}


def project_files(paths: list[str], ignore: list[Path]) -> set[str]:
    """Existing project files among `paths`, relative to the root; tests, the venv, caches and
    the run's own outputs aside."""
    keep = set()
    for p in map(Path, paths):
        if not p.is_file() or any(p.is_relative_to(i) for i in ignore):
            continue
        if p.is_relative_to(ROOT):
            rel = p.relative_to(ROOT)
            if rel.parts[0] not in (".venv", "tests", ".git") and "__pycache__" not in rel.parts:
                keep.add(str(rel))
    return keep


@pytest.fixture(scope="module")
def traced_run(tmp_path_factory) -> set[str]:
    """Project files read by a smoke training of the suite's first binarized MLP config."""
    tmp = tmp_path_factory.mktemp("trace")
    raw = tmp / "raw"
    write_tiny_mnist(raw)
    out = tmp / "seen.json"
    cmd = [sys.executable, "-c", TRACER, str(out), str(ROOT / "pipelines/train.py"),
           "dataset=mnist", "model=mlp", "quant=bnn", "trainer=smoke", "model.hidden=16",
           f"paths.raw_dir={raw}", f"out_dir={tmp / 'run'}", f"hydra.run.dir={tmp / 'hydra'}",
           f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
           f"tracking.artifact_root={tmp / 'artifacts'}", "trainer.progress_bar=false"]
    done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return project_files(json.loads(out.read_text()), ignore=[tmp])


def test_train_stage_depends_on_every_file_a_run_reads(traced_run):
    deps = stage_deps("train@mnist-mlp-bnn")
    assert "src/xnorlab/schema.py" in traced_run and "conf/dataset/mnist.yaml" in traced_run
    missing = uncovered(traced_run - set(NOT_DEPENDENCIES), deps)
    assert not missing, f"dvc.yaml train stage lacks dependencies on {sorted(missing)}"


@pytest.mark.parametrize("dep", ["src/xnorlab/schema.py", "src/xnorlab/quant",
                                 "conf/dataset/mnist.yaml", "conf/paths/default.yaml"])
def test_removing_a_dependency_is_caught(traced_run, dep):
    deps = stage_deps("train@mnist-mlp-bnn")
    assert dep in deps
    assert uncovered(traced_run - set(NOT_DEPENDENCIES), deps - {dep}), dep


def test_distill_stage_has_the_train_dependencies_and_its_teacher():
    train = stage_deps("train@mnist-mlp-bnn")
    distill = stage_deps("distill@mnist-mlp-bnn-distill")
    assert distill - train == {"models/mnist-mlp-float"}  # the teacher: every seed
    assert train - distill == set()
