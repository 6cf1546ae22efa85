"""DVC stage `train@<run>` and Hydra entry point: train one configuration.

    python pipelines/train.py dataset=mnist model=cnn quant=bnn trainer.max_epochs=5
    python pipelines/train.py -m model=mlp,cnn quant=float,bnn     # one MLflow parent run
    python pipelines/train.py -m hydra/launcher=submitit_slurm quant=float,bnn   # SLURM jobs
    python pipelines/train.py trainer.strategy=ddp trainer.devices=2             # 2 processes
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from xnorlab.entry import entry_point
from xnorlab.io import exit_on_full_disk
from xnorlab.schema import ConfigError

log = logging.getLogger("xnorlab.train")


@entry_point("train")
def main(cfg: DictConfig) -> float | None:
    # torch and Lightning load only once the config composed (seconds on a busy machine), so
    # a bad conf file, override or key is reported at once
    from xnorlab.train.config import check_train_config

    try:
        checked = check_train_config(cfg)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    from xnorlab.train.run import DataError, run
    from xnorlab.train.signals import sigterm_raises

    hc = HydraConfig.get()
    sweep_dir = Path(hc.sweep.dir).resolve() if hc.mode == RunMode.MULTIRUN else None
    try:
        with exit_on_full_disk(), sigterm_raises():  # scancel: the run is marked FAILED
            metrics = run(checked, sweep_dir=sweep_dir)
    except DataError as err:
        sys.exit(f"error: {err}")
    return metrics.get("test_acc")  # none on a DDP worker (rank > 0): rank 0 records


if __name__ == "__main__":
    main()
