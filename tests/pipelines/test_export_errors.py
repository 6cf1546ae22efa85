"""The export stage on a checkpoint it cannot read: one error line, no traceback."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_torn_checkpoint_gets_a_clear_error(tmp_path):
    # Regression (fault harness): a truncated best.ckpt ended the export in a torch traceback.
    ckpt = tmp_path / "models" / "r" / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"PK\x03\x04 torn")
    proc = subprocess.run(
        [sys.executable, "pipelines/export.py", "run=r", f"paths.models_dir={tmp_path / 'models'}",
         f"paths.packed_dir={tmp_path / 'packed'}", f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"error: {ckpt} is not a readable checkpoint" in proc.stderr
