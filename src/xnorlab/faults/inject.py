"""Test-only kill points: run a script and SIGKILL it at the Nth call of a chosen function.

    XNORLAB_FAULT_KILL=checkpoint:3 python -m xnorlab.faults.inject pipelines/train.py ...
    XNORLAB_FAULT_COUNT=calls.json python -m xnorlab.faults.inject pipelines/train.py ...

The patching lives here only, so library code carries no fault hooks. Each point wraps one
function; ``kill`` kills before the call runs, except at ``checkpoint`` and ``write``, which
kill in the middle of the write itself (half the bytes on disk, as a kill mid-``write`` does).
With ``XNORLAB_FAULT_COUNT`` nothing is killed and the calls per point are written at exit, so a
harness can draw N uniformly from the calls an unkilled run makes.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import runpy
import signal
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

KILL_ENV = "XNORLAB_FAULT_KILL"
COUNT_ENV = "XNORLAB_FAULT_COUNT"

# point name -> (module, attribute path) of the function to wrap
POINTS: dict[str, tuple[str, str]] = {
    "step": ("xnorlab.train.module", "Classifier.training_step"),
    "checkpoint": ("xnorlab.train.checkpoint_io", "save_checkpoint_file"),
    "metric": ("mlflow.tracking.client", "MlflowClient.log_metric"),
    "artifact": ("mlflow.tracking.client", "MlflowClient.log_artifact"),
    "write": ("xnorlab.io", "atomic_writer"),
    "exactness": ("xnorlab.bench.exactness", "compare"),
}

_calls: Counter[str] = Counter()


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _HalfWriter:
    """A file proxy that writes half of the next write() and then kills the process."""

    def __init__(self, f: Any):
        self._f = f

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._f.write(view[: len(view) // 2])
        self._f.flush()
        _die()
        return 0  # not reached

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _half_checkpoint(checkpoint: dict[str, Any], path: Any) -> None:
    """The checkpoint write, killed halfway through writing the file."""
    from xnorlab import io as xio

    real = xio.atomic_writer

    @contextlib.contextmanager
    def half(p: Any, *args: Any, **kwargs: Any) -> Any:
        with real(p, *args, **kwargs) as f:
            yield _HalfWriter(f)

    xio.atomic_writer = half  # type: ignore[assignment]
    POINTS_ORIGINAL["checkpoint"](checkpoint, path)


@contextlib.contextmanager
def _half_atomic_writer(path: Any, *args: Any, **kwargs: Any) -> Any:
    with POINTS_ORIGINAL["write"](path, *args, **kwargs) as f:
        yield _HalfWriter(f)


POINTS_ORIGINAL: dict[str, Callable[..., Any]] = {}


def _resolve(point: str) -> tuple[Any, str]:
    module_name, attr = POINTS[point]
    owner: Any = importlib.import_module(module_name)
    *parents, name = attr.split(".")
    for p in parents:
        owner = getattr(owner, p)
    return owner, name


def _install(point: str, kill_at: int | None) -> None:
    owner, name = _resolve(point)
    original = getattr(owner, name)
    POINTS_ORIGINAL[point] = original
    mid = {"checkpoint": _half_checkpoint, "write": _half_atomic_writer}.get(point)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _calls[point] += 1
        if kill_at is not None and _calls[point] == kill_at:
            if mid is None:
                _die()
            return mid(*args, **kwargs)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)
    if point == "write":  # modules that imported the name before we patched it
        for mod_name in ("xnorlab.packed.format", "xnorlab.data.download"):
            mod = importlib.import_module(mod_name)
            if getattr(mod, "atomic_writer", None) is original:
                mod.atomic_writer = wrapper


def _install_from_env() -> None:
    kill = os.environ.get(KILL_ENV)
    count_file = os.environ.get(COUNT_ENV)
    if kill:
        point, _, n = kill.partition(":")
        _install(point, int(n))
    elif count_file:
        for point in POINTS:
            _install(point, None)
        atexit.register(_write_counts, count_file)


def _write_counts(path: str) -> None:
    with open(path, "w") as f:
        json.dump(dict(_calls), f)


def main() -> None:
    """``python -m xnorlab.faults.inject SCRIPT ARGS...``: run SCRIPT as ``__main__``."""
    script, *args = sys.argv[1:]
    _install_from_env()
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
