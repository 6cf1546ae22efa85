"""Full disk: run a stage whose output folder sits on a small tmpfs filled to the brim.

Each case mounts its own tmpfs (root only), puts earlier outputs there, fills the rest but
``free_bytes``, runs the stage, then frees the space and runs it again. It survives when the
full-disk run fails with an error that names a path on the tmpfs and says the disk is full,
the earlier files are byte-identical, and the run after freeing the space succeeds.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from xnorlab.faults.outcome import Tally
from xnorlab.faults.workspace import Proc

FILLER = ".filler"


@contextlib.contextmanager
def tmpfs(mountpoint: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``mountpoint``, unmounted (lazily if busy) on exit."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
                   check=True, capture_output=True, text=True)
    try:
        yield mountpoint
    finally:
        done = subprocess.run(["umount", str(mountpoint)], capture_output=True)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def can_mount(work: Path) -> str | None:
    """None if this process can mount a tmpfs, else why not."""
    if os.geteuid() != 0:
        return "not root: cannot mount a tmpfs"
    try:
        with tmpfs(work / ".probe", "64k"):
            pass
    except (OSError, subprocess.CalledProcessError) as err:
        return f"cannot mount a tmpfs: {getattr(err, 'stderr', '') or err}"
    return None


def fill(mount: Path, free_bytes: int) -> None:
    """Fill ``mount`` with one file, then shrink it so about ``free_bytes`` stay free."""
    filler = mount / FILLER
    chunk = b"\0" * (1 << 16)
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
    os.truncate(filler, max(0, filler.stat().st_size - free_bytes))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != FILLER}


def disk_case(name: str, mount: Path, populate: Callable[[Path], None], free_bytes: int,
              run: Callable[[], Proc], after: Callable[[Proc], list[str]]) -> tuple[
                  list[str], int]:
    """Problems and records lost of one full-disk case on an already mounted ``mount``."""
    populate(mount)
    before = snapshot(mount)
    fill(mount, free_bytes)
    full = run()
    problems = []
    if full.returncode == 0:
        problems.append("the run on a full disk exited 0")
    else:
        text = full.stderr
        if "Traceback (most recent call last)" in text:
            problems.append("traceback: " + text.strip().splitlines()[-1][:300])
        if "no space left" not in text.lower():
            problems.append("the error does not say the disk is full: "
                            + (text.strip().splitlines() or [""])[-1][:300])
        if str(mount) not in text:
            problems.append(f"the error names no path under {mount}")
    now = snapshot(mount)
    lost = [f for f, data in before.items() if now.get(f) != data]
    problems += [f"earlier file changed or lost: {f}" for f in lost]
    (mount / FILLER).unlink()
    leftovers = [f for f in snapshot(mount) if f not in before and Path(f).name.startswith(".")]
    if leftovers:
        problems.append(f"temporary files left behind: {leftovers[:5]}")
        for f in leftovers:
            (mount / f).unlink()
    again = run()
    if again.returncode != 0:
        problems.append(f"the run after freeing space failed: {again.stderr[-400:]}")
    else:
        problems += after(again)
    return problems, len(lost)


def run_disk_cases(work: Path, cases: list[tuple[str, str, Callable[[Path], dict]]]) -> Tally:
    """``cases``: (name, tmpfs size, make(mount) -> disk_case keyword arguments)."""
    tally = Tally()
    why_not = can_mount(work)
    if why_not:
        tally.skipped = why_not
        return tally
    for name, size, make in cases:
        mount = work / f"disk-{name}"
        with tmpfs(mount, size):
            try:
                problems, lost = disk_case(name, mount, **make(mount))
            finally:
                shutil.rmtree(mount / "models", ignore_errors=True)
        tally.add(name, problems, lost=lost)
    return tally
