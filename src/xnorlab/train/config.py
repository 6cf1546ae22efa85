"""Schema of the training config (conf/train.yaml): checked before anything runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from xnorlab.models.config import to_model_config
from xnorlab.quant.config import to_quant_config
from xnorlab.schema import ConfigError, DatasetConfig, validate


@dataclass
class DataConfig:
    raw_dir: str = "data/raw"
    batch_size: int = 100
    eval_batch_size: int = 1000
    val_size: int = 10000
    val_split: str = "last"
    train_limit: int | None = None
    eval_limit: int | None = None


@dataclass
class OptimConfig:
    lr: float = 3e-3
    lr_end: float = 3e-4
    weight_decay: float = 0.0
    loss: str = "cross_entropy"
    latent_recipe: str = "auto"


@dataclass
class DistillConfig:
    teacher: str | None = None
    temperature: float = 4.0
    weight: float = 0.5


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    max_minutes: float | None = None
    accelerator: str = "cpu"
    devices: int = 1
    threads: int | None = None
    deterministic: bool = True
    progress_bar: bool = True
    log_every_n_steps: int = 50


@dataclass
class TrackingConfig:
    uri: str | None = None
    experiment: str = "xnorlab"
    artifact_root: str = "mlartifacts"
    log_checkpoint: bool = True


@dataclass
class SuiteConfig:
    """A suite: the datasets and runs `dvc repro` expands (see conf/suite/)."""

    name: str = "adhoc"
    datasets: list[str] = field(default_factory=list)
    runs: dict[str, Any] = field(default_factory=dict)
    distill_runs: dict[str, Any] = field(default_factory=dict)
    exports: list[str] = field(default_factory=list)


@dataclass
class RunConfig:
    """Everything but the model and quant groups, which have their own schemas."""

    seed: int = 0
    run_name: str = "run"
    out_dir: str = "models/run"
    resume: bool = True
    metrics_file: str | None = None
    history_file: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    suite: SuiteConfig = field(default_factory=SuiteConfig)


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
