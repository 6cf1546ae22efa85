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

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from xnorlab.io import exit_on_full_disk
from xnorlab.schema import ConfigError
from xnorlab.train.config import check_train_config
from xnorlab.train.run import DataError, run
from xnorlab.train.signals import sigterm_raises

log = logging.getLogger("xnorlab.train")


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    try:
        checked = check_train_config(cfg)
    except ConfigError as err:
        sys.exit(f"error: {err}")
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
