"""Checkpoints are written atomically beside their destination."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from xnorlab.train import checkpoint_io
from xnorlab.train.run import prepare_out_dir


def test_checkpoint_write_is_atomic_and_a_full_disk_names_the_path(tmp_path, monkeypatch):
    # Regression (fault harness): Lightning staged checkpoints in /tmp and copied them over, so a
    # full disk left a partial file and an error without a path, and kills left strays in /tmp.
    path = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint_io.save_checkpoint_file({"w": torch.ones(3)}, path)
    assert torch.load(path)["w"].tolist() == [1.0, 1.0, 1.0]
    before = path.read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="last.ckpt") as err:
        checkpoint_io.save_checkpoint_file({"w": torch.zeros(1000)}, path)
    assert err.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_prepare_out_dir_removes_temporaries_of_killed_writers(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    stray = out / "checkpoints" / ".last.ckpt.abc123.tmp"
    stray.write_bytes(b"half")
    prepare_out_dir(out, {"a": 1}, resume=True)
    assert not stray.exists()


def test_unreadable_saved_config_moves_the_folder_aside(tmp_path):
    # Regression (fault harness): a torn or foreign config.yaml made the rerun crash with a
    # YAML traceback instead of setting the folder aside.
    out = tmp_path / "models" / "run"
    out.mkdir(parents=True)
    (out / "config.yaml").write_bytes(b"\x00\xff: [unclosed\n")
    assert prepare_out_dir(out, {"a": 1}, resume=True) is None
    assert (out / "config.yaml").read_text().startswith("a: 1")
    assert len(list((tmp_path / "models" / ".replaced").iterdir())) == 1


def test_a_finished_folder_set_aside_keeps_its_mlflow_run_id(tmp_path):
    # Regression (fault harness): killed while logging its final metrics, a run's folder held
    # metrics.json, so the rerun set it aside with its MLflow id and that run stayed RUNNING.
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("a: 1\n")
    (out / "metrics.json").write_text("{}")
    (out / "mlflow_run_id").write_text("abc")
    prepare_out_dir(out, {"a": 1}, resume=True)
    assert (out / "mlflow_run_id").read_text() == "abc" and not (out / "metrics.json").exists()
