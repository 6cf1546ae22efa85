"""Entry points turn a full disk into one error line."""

from __future__ import annotations

import errno

import pytest

from xnorlab.io import atomic_writer, exit_on_full_disk


def test_full_disk_exits_with_the_path_other_errors_pass(tmp_path, monkeypatch):
    # Regression (fault harness): a full disk ended train/export/report in a traceback.
    import os

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(SystemExit) as done, exit_on_full_disk():
        with atomic_writer(tmp_path / "out.json") as f:
            f.write(b"{}")
    assert str(done.value.code).startswith("error: ") and "out.json" in str(done.value.code)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(PermissionError), exit_on_full_disk():
        raise PermissionError(errno.EACCES, "denied")
