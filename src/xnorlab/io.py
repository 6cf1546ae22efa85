"""File output that a reader never sees half-written, and what this machine's CPU is.

Every file the project writes goes through :func:`atomic_writer`: a temporary file in the
destination's folder, flushed and fsynced, then renamed over the destination. A killed process
leaves at most a ``.<name>.*.tmp`` file, never a truncated destination.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Any

__all__ = [
    "CpuInfo",
    "atomic_writer",
    "cpu_info",
    "exit_on_full_disk",
    "figure_png",
    "json_bytes",
    "write_atomic",
    "write_json",
]

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_writer(
    path: str | os.PathLike[str], mode: str = "wb", *, tmp_suffix: str = TMP_SUFFIX
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit, fsync it and rename it to ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was. A full disk
    raises ``OSError(ENOSPC)`` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=tmp_suffix)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; use the usual file mode
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on device while writing {path}") from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def exit_on_full_disk() -> Iterator[None]:
    """For entry points: a full disk ends the process with one ``error:`` line (the message of
    :func:`atomic_writer` names the path) and exit 1, not a traceback. Other errors pass."""
    try:
        yield
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        sys.exit(f"error: {err.strerror or err}")


def write_atomic(
    path: str | os.PathLike[str], data: bytes | str, *, skip_unchanged: bool = False
) -> bool:
    """Write ``data`` to ``path`` atomically. With ``skip_unchanged``, a file that already holds
    exactly ``data`` is left alone (mtime included) and False is returned."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    if skip_unchanged and path.is_file() and path.read_bytes() == raw:
        return False
    with atomic_writer(path) as f:
        f.write(raw)
    return True


def figure_png(fig: Any, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes with no metadata that changes between runs; closes it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def json_bytes(data: Any) -> bytes:
    """Deterministic JSON: sorted keys, 2-space indentation, trailing newline."""
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def write_json(path: str | os.PathLike[str], data: Any, *, skip_unchanged: bool = False) -> bool:
    """Write ``data`` as deterministic JSON, atomically."""
    return write_atomic(path, json_bytes(data), skip_unchanged=skip_unchanged)


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as ``/proc/cpuinfo`` names it: model and feature flags."""

    model: str
    flags: frozenset[str]

    def simd_flags(self) -> list[str]:
        """The flags that decide which popcount route a JIT can take (sorted)."""
        return sorted(f for f in self.flags if f.startswith(("avx", "popcnt", "sse4")))


@cache
def cpu_info() -> CpuInfo:
    """This machine's CPU model and flags (first processor of ``/proc/cpuinfo``)."""
    model, flags = "", frozenset[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not model:
                model = value.strip()
            elif key == "flags" and not flags:
                flags = frozenset(value.split())
            if model and flags:
                break
    except OSError:
        pass
    return CpuInfo(model or platform.processor() or platform.machine() or "unknown", flags)
