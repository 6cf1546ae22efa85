"""One configuration trained over several seeds (a Hydra multirun `-m seed=0,1,2`): the files
DVC tracks for it (`metrics/<run>.json`, `curves/<run>.json`) hold every seed, each job adding
its own, so a sweep's jobs can write them one after another.

DVC deletes these outputs before it reruns a stage, so a file never mixes seeds of two runs of
the stage; outside DVC, a rerun of one seed replaces that seed's entry.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from xnorlab.io import write_json
from xnorlab.stats import mean_std

log = logging.getLogger(__name__)


def summarize(per_seed: dict[str, dict[str, float]]) -> dict[str, Any]:
    """``{n, seeds, mean, std, per_seed}`` over the seeds' metrics (keys every seed has)."""
    seeds = sorted(per_seed, key=int)
    keys = [k for k in per_seed[seeds[0]] if all(k in per_seed[s] for s in seeds)]
    stats = {k: mean_std([float(per_seed[s][k]) for s in seeds]) for k in keys}
    return {
        "n": len(seeds),
        "seeds": [int(s) for s in seeds],
        "mean": {k: m for k, (m, _) in stats.items()},
        "std": {k: s for k, (_, s) in stats.items()},
        "per_seed": {s: per_seed[s] for s in seeds},
    }


def _read(path: Path, default: Any) -> Any:
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:  # torn or foreign: rebuilt from this seed on
        log.warning("%s is unreadable (%s); rewriting it", path, err)
        return default


def add_seed_metrics(path: Path, seed: int, metrics: dict[str, float]) -> dict[str, Any]:
    """Put one seed's metrics into the summary file at `path` (atomically); return it."""
    old = _read(path, {})
    per_seed = old.get("per_seed", {}) if isinstance(old, dict) else {}
    per_seed[str(seed)] = metrics
    summary = summarize(per_seed)
    write_json(path, summary)
    return summary


def add_seed_history(path: Path, seed: int, curve: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Put one seed's per-epoch records (tagged ``seed``) into the curve file at `path`."""
    old = _read(path, [])
    kept = [r for r in old if isinstance(r, dict) and r.get("seed") != seed] if isinstance(
        old, list) else []
    records = kept + [{**r, "seed": seed} for r in curve]
    records.sort(key=lambda r: (r["seed"], r.get("epoch", 0)))
    write_json(path, records)
    return records
