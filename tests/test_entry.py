"""Every entry point meets a bad config with one error line naming the file or key.

Regressions (fault harness, issue 15): a conf file that is not valid YAML made Hydra print a
traceback; a bad override printed several lines; an empty conf file was taken as an empty group
and the run went on with the schema's defaults; team_bench, train_bench and faults read missing
keys only after their long work (or in a KeyError traceback). The entry points run in this
process (one import of torch for all of them); one runs as a subprocess to see what a user sees.
"""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

# script -> (primary config, an override deleting a key it needs, the key the error names)
ENTRY_POINTS = {
    "train.py": ("train", "~out_dir", "out_dir"),
    "export.py": ("export", "run=???", "run"),
    "report.py": ("report", "~report.out_dir", "out_dir"),
    "download.py": ("download", "~download.raw_dir", "raw_dir"),
    "benchmark.py": ("benchmark", "~out", "out"),
    "suite.py": ("run_suite", "~out_root", "out_root"),
    "team_bench.py": ("team_bench", "~out", "out"),
    "train_bench.py": ("train_bench", "~bench.out", "bench.out"),
    "faults.py": ("faults", "~profiles", "profiles"),
}


def run_entry(script: str, args: list[str], tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> str:
    """The error line an entry point exits with, run in this process."""
    g = runpy.run_path(str(ROOT / "pipelines" / script), run_name="entry_under_test")
    monkeypatch.setattr(sys, "argv", [script, *args, f"hydra.run.dir={tmp_path / 'hydra'}",
                                      "hydra/job_logging=disabled",
                                      "hydra/hydra_logging=disabled"])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        g["main"]()
    code = exit_info.value.code
    assert isinstance(code, str), f"{script} exited {code!r} without an error line"
    assert code.startswith("error: ") and "\n" not in code, code
    return code


def _conf_copy(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    return conf


@pytest.mark.parametrize("script", sorted(ENTRY_POINTS))
def test_bad_config_file_override_and_missing_key_each_give_one_line(script, tmp_path,
                                                                    monkeypatch):
    name, drop, key = ENTRY_POINTS[script]
    conf = _conf_copy(tmp_path)
    bad = conf / f"{name}.yaml"
    bad.write_text(bad.read_text()[:40] + "\n  : [unclosed\n")  # truncated, then garbage
    msg = run_entry(script, [f"--config-path={conf}"], tmp_path, monkeypatch)
    assert str(bad) in msg and "not valid YAML" in msg

    msg = run_entry(script, ["no_such_key=1"], tmp_path, monkeypatch)
    assert "no_such_key" in msg

    msg = run_entry(script, [drop], tmp_path, monkeypatch)
    assert key in msg


@pytest.mark.parametrize("content, says", [
    ("", "is empty"),
    ("# only a comment\n", "is empty"),
    ("- 1\n- 2\n", "holds a list"),
    ("3\n", "trainer/smoke.yaml cannot be read"),
    (b"max_epochs: \xff\xfe\n", "trainer/smoke.yaml cannot be read"),
    ("max_epochs: three\n", "trainer.max_epochs"),
    ("max_epochs: [1, 2]\n", "trainer.max_epochs"),
])
def test_a_group_file_of_the_wrong_kind_is_named(content, says, tmp_path, monkeypatch):
    conf = _conf_copy(tmp_path)
    smoke = conf / "trainer" / "smoke.yaml"
    if isinstance(content, bytes):
        smoke.write_bytes(content)
    else:
        smoke.write_text(content)
    msg = run_entry("train.py", [f"--config-path={conf}", "trainer=smoke"], tmp_path,
                    monkeypatch)
    assert says in msg


def test_a_directory_in_place_of_a_group_file_is_named(tmp_path, monkeypatch):
    conf = _conf_copy(tmp_path)
    (conf / "trainer" / "smoke.yaml").unlink()
    (conf / "trainer" / "smoke.yaml").mkdir()
    msg = run_entry("train.py", [f"--config-path={conf}", "trainer=smoke"], tmp_path,
                    monkeypatch)
    assert "trainer/smoke" in msg


def test_a_user_sees_one_line_and_no_traceback(tmp_path):
    conf = _conf_copy(tmp_path)
    (conf / "download.yaml").write_text("download: {raw_dir: [\n")
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run(
        [sys.executable, "pipelines/download.py", f"--config-path={conf}",
         f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {conf / 'download.yaml'} is not valid YAML: ")
    assert line.endswith("(line 2, column 1)")
