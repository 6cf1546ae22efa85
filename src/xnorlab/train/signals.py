"""SIGTERM as an exception, so a cancelled run is recorded as FAILED rather than lost."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["Terminated", "sigterm_raises"]


class Terminated(Exception):
    """The process got SIGTERM (scancel, a scheduler's time limit, kill)."""


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"received {signal.Signals(signum).name}")


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Inside the block SIGTERM raises :class:`Terminated`.

    SLURM's ``scancel`` sends SIGTERM and SIGKILL only ``KillWait`` seconds later; as an
    exception, SIGTERM runs the ``except`` clauses that mark the MLflow run FAILED. (submitit
    ignores SIGTERM in its jobs, and a bare SIGTERM would leave the run RUNNING for ever.)
    Outside the main thread, where Python cannot set handlers, it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
