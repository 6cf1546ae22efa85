"""Hyperparameter search with Optuna, scored on validation accuracy (never test).

    python pipelines/search.py hparams_search=mlp_bnn n_trials=20
    python pipelines/search.py hparams_search=cnn_bnn storage=postgresql+psycopg://...

Each trial is a training run (conf/train.yaml plus the search's fixed overrides and the trial's
values), an MLflow child of the search's parent run; the best trial is written as an experiment
config (`best_out`), so `train.py experiment=best_<name>` or a suite entry can use it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra import compose
from omegaconf import DictConfig

from xnorlab import tracking
from xnorlab.schema import ConfigError, SearchConfig, checked
from xnorlab.search import PARENT_NOTE, study, write_best
from xnorlab.train.config import check_train_config
from xnorlab.train.run import DataError, run
from xnorlab.train.signals import sigterm_raises

log = logging.getLogger("xnorlab.search")


@hydra.main(config_path="../conf", config_name="search", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        c = checked(cfg, SearchConfig, "search")
    except ConfigError as err:
        sys.exit(f"error: {err}")
    hs = c["hparams_search"]
    sweep_dir = Path(c["sweep_dir"]).resolve()

    def train(overrides: list[str], number: int) -> dict[str, float]:
        args = [*hs["fixed"], *c["train_overrides"], *overrides,
                f"run_name={hs['name']}-trial{number}", f"out_dir={sweep_dir}/trial-{number}"]
        trial_cfg = check_train_config(compose(config_name="train", overrides=args))
        return run(trial_cfg, sweep_dir=sweep_dir)  # child of the search's parent run

    try:
        with sigterm_raises():
            s = study(train, hs["space"], c["n_trials"], c["seed"], c["study_name"],
                      c["storage"])
    except (ConfigError, DataError, ValueError) as err:
        sys.exit(f"error: {err}")
    parent = (sweep_dir / tracking.PARENT_ID_FILE).read_text().strip()
    write_best(Path(hydra.utils.to_absolute_path(c["best_out"])), s, hs["fixed"],
               PARENT_NOTE.format(parent=parent))


if __name__ == "__main__":
    main()
