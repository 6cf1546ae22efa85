"""Checkpoint files written like every other file of the project: atomically, in place.

Lightning's own writer stages the file in the system temp folder and moves it over, which is a
copy when that folder is on another filesystem: a kill mid-copy leaves a torn checkpoint, a full
disk leaves a partial one and an error that names no path, and each kill leaves a stray file in
/tmp. Here the checkpoint is serialised in memory, then written by ``xnorlab.io.atomic_writer``
beside its destination (fsync + rename).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from xnorlab import io as xio


def save_checkpoint_file(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Write ``checkpoint`` to ``path`` atomically; ENOSPC names ``path``."""
    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    with xio.atomic_writer(path) as f:
        f.write(buf.getbuffer())


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose writes go through :func:`save_checkpoint_file`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        save_checkpoint_file(checkpoint, path)
