"""Machine fingerprint: the facts a benchmark result depends on, as a small JSON file.

The DVC stage ``machine`` (``always_changed``) rewrites it on every ``dvc repro``; it only
changes on another machine (CPU model, flags, cores), so the ``benchmark`` stage, which
depends on it, reruns there and stays cached here.

    python -m xnorlab.bench.machine reports/machine.json
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

from xnorlab.io import cpu_info, write_json


def fingerprint() -> dict[str, Any]:
    """CPU model, its full sorted flag list, logical cores (and those this process may use)."""
    info = cpu_info()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": info.model, "flags": sorted(info.flags), "simd_flags": info.simd_flags(),
            "cores": os.cpu_count(), "usable_cores": usable, "arch": platform.machine()}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m xnorlab.bench.machine OUT.json", file=sys.stderr)
        return 2
    write_json(Path(argv[0]), fingerprint(), skip_unchanged=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
