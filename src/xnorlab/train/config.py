"""Schema of the training config (conf/train.yaml): checked before anything runs."""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from xnorlab.models.config import to_model_config
from xnorlab.quant.config import to_quant_config
from xnorlab.schema import ConfigError, DatasetConfig, RunConfig, validate

LOSSES = ("cross_entropy", "squared_hinge")
RECIPES = ("auto", "paper", "torch")


def check_train_config(cfg: DictConfig) -> dict[str, Any]:
    """Validate a composed training config; return it resolved as plain containers.

    Raises ConfigError naming the misspelt, missing or invalid key.
    """
    try:
        full = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot resolve the config: {err}") from err
    rest = {k: v for k, v in full.items() if k not in ("dataset", "model", "quant")}
    checked = to_plain(validate(OmegaConf.create(rest), RunConfig, "train"))
    # A run belongs to a suite by name; the suite's list of other runs is not its config.
    checked["suite"] = {"name": checked["suite"]["name"]}
    checked["dataset"] = to_plain(validate(full["dataset"], DatasetConfig, "dataset"))
    try:
        checked["model"] = dataclasses.asdict(to_model_config(full["model"]))
        checked["quant"] = dataclasses.asdict(to_quant_config(full["quant"]))
    except (ValueError, OmegaConfBaseException) as err:
        raise ConfigError(f"invalid model/quant config: {err}") from err
    minutes = checked["trainer"]["max_minutes"]
    if minutes is not None and minutes <= 0:
        raise ConfigError(f"trainer.max_minutes={minutes}; give a positive number or null")
    if checked["optim"]["loss"] not in LOSSES:
        raise ConfigError(f"optim.loss={checked['optim']['loss']!r}; choose one of {LOSSES}")
    if checked["optim"]["latent_recipe"] not in RECIPES:
        raise ConfigError(
            f"optim.latent_recipe={checked['optim']['latent_recipe']!r}; choose one of {RECIPES}"
        )
    if checked["model"]["name"] != "kmeans" and checked["data"]["val_size"] < 1:
        raise ConfigError("data.val_size must be >= 1: the best checkpoint is chosen on it")
    return checked


def to_plain(cfg: DictConfig) -> dict[str, Any]:
    """A config as plain resolved containers (for YAML, MLflow params, checkpoints)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
