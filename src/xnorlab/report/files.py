"""Atomic, byte-stable file output (temp file + rename; unchanged files are not rewritten)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on these machines
import matplotlib.pyplot as plt  # noqa: E402


def write_atomic(path: Path, data: bytes) -> bool:
    """Write `data` to `path` through a temporary file in the same folder and a rename, so a
    reader never sees a half-written file. Returns False (and leaves the file and its mtime
    alone) when the content is already there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_bytes() == data:
        return False
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def json_bytes(data: Any) -> bytes:
    """Deterministic JSON: sorted keys, fixed indentation, trailing newline."""
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def figure_png(fig: plt.Figure, dpi: int = 110) -> bytes:
    """A figure as PNG bytes with no metadata that changes between runs, then closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
