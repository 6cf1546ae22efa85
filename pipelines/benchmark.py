"""DVC stage `benchmark`: packed XNOR-popcount engine vs float32 PyTorch, in one process.

Writes reports/benchmark.json (DVC metrics) and logs it to MLflow (logic: xnorlab.bench.stage).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from omegaconf import DictConfig

from xnorlab.bench.stage import log_to_mlflow, run_benchmark
from xnorlab.entry import entry_point
from xnorlab.io import write_json
from xnorlab.schema import BenchmarkConfig, validate

log = logging.getLogger("xnorlab.benchmark")


@entry_point("benchmark")
def main(cfg: DictConfig) -> None:
    cfg = validate(cfg, BenchmarkConfig, "benchmark")
    report = run_benchmark(cfg)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, report)
    log.info("MLflow run %s", log_to_mlflow(report, out, cfg))
    for key, t in report["targets"].items():
        log.info("%s: best %s median %s (min %s, met %s)", key, t["best"], t["median"], t["min"],
                 t["met"])


if __name__ == "__main__":
    os.environ.setdefault("NUMBA_NUM_THREADS", str(os.cpu_count() or 1))
    main()
