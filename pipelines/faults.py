"""Fault-injection harness: kill, fill the disk, corrupt inputs, run two `dvc repro` at once;
write per fault class cases tried, survived and records lost to reports/faults.json.

    python pipelines/faults.py                  # profile ci
    python pipelines/faults.py profile=long
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from xnorlab.entry import entry_point, require_keys
from xnorlab.faults.harness import run_profile
from xnorlab.io import write_json


def profile_config(cfg: DictConfig) -> dict:
    """The common settings with the chosen profile's on top."""
    require_keys(cfg, "profile", "out", "work_dir", "common", "profiles")
    raw = OmegaConf.to_container(cfg, resolve=True)
    if raw["profile"] not in raw["profiles"]:
        sys.exit(f"error: profile={raw['profile']!r}: choose one of {sorted(raw['profiles'])}")
    merged = OmegaConf.merge(raw["common"], raw["profiles"][raw["profile"]])
    return {"name": raw["profile"], **OmegaConf.to_container(merged)}


@entry_point("faults")
def main(cfg: DictConfig) -> None:
    out = Path(hydra.utils.to_absolute_path(cfg.out))
    result = run_profile(profile_config(cfg), Path(cfg.work_dir),
                         save=lambda partial: write_json(out, partial))
    write_json(out, result)
    total = result["total"]
    print(f"faults ({result['profile']}): tried {total['tried']}, survived {total['survived']}, "
          f"lost {total['lost']}, duplicated {total['duplicated']}")
    if total["survived"] != total["tried"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
