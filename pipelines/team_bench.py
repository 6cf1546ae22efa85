"""Concurrent writers against each tracking store, and a bounded load test of the team server.

    python pipelines/team_bench.py                  # writes reports/team_bench.json
    python pipelines/team_bench.py writers=4 stores=[sqlite] load.enabled=false
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from xnorlab.entry import entry_point, require_keys
from xnorlab.io import write_json
from xnorlab.team.bench import run_bench

log = logging.getLogger("xnorlab.team_bench")


@entry_point("team_bench")
def main(cfg: DictConfig) -> None:
    require_keys(cfg, "raw_dir", "out", "work_dir", "writers", "epochs", "stores",
                 "load.enabled", "load.clients", "load.seconds", "load.metrics_per_request")
    result = run_bench(OmegaConf.to_container(cfg, resolve=True))
    write_json(Path(cfg.out), result)
    log.info("wrote %s", cfg.out)


if __name__ == "__main__":
    main()
