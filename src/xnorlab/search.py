"""Hyperparameter search: Optuna trials as training runs, scored on validation accuracy.

hydra-optuna-sweeper 1.3.0 pins optuna<3 (whose SQLite storage breaks with SQLAlchemy 2), so
Optuna is driven directly: each trial composes conf/train.yaml with the trial's overrides and
trains in this process, as an MLflow child of the search's parent run. The score is the best
validation accuracy (`best_val_acc`); the test split is never looked at.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import yaml

from xnorlab.io import write_atomic

log = logging.getLogger(__name__)

__all__ = ["LR_DECAY", "PARENT_NOTE", "best_experiment_yaml", "study", "suggest",
           "trial_overrides", "write_best"]

# A searched `lr_decay` sets optim.lr_end = optim.lr * lr_decay: the decay stays below lr
# whatever lr the trial drew.
LR_DECAY = "lr_decay"
SCORE = "best_val_acc"
PARENT_NOTE = "Trials: children of MLflow run {parent}"


def suggest(trial: optuna.Trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The trial's value for every setting of ``space`` (see ``schema.ParamSpec``)."""
    values: dict[str, Any] = {}
    for key, spec in space.items():
        kind = spec["type"]
        if kind == "float":
            values[key] = trial.suggest_float(key, spec["low"], spec["high"], log=spec["log"])
        elif kind == "int":
            values[key] = trial.suggest_int(key, int(spec["low"]), int(spec["high"]),
                                            log=spec["log"])
        elif kind == "categorical":
            values[key] = trial.suggest_categorical(key, spec["choices"])
        else:
            raise ValueError(f"hparams_search.space.{key}.type={kind!r}; choose float, int or "
                             "categorical")
    return values


def resolved(values: dict[str, Any]) -> dict[str, Any]:
    """Train-config keys and values: ``lr_decay`` becomes ``optim.lr_end``."""
    out = {k: v for k, v in values.items() if k != LR_DECAY}
    if LR_DECAY in values:
        out["optim.lr_end"] = out.get("optim.lr", 3e-3) * values[LR_DECAY]
    return out


def trial_overrides(values: dict[str, Any]) -> list[str]:
    """``key=value`` overrides of train.py for a trial's values."""
    return [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in resolved(values).items()]


def best_experiment_yaml(values: dict[str, Any], fixed: list[str], note: str) -> str:
    """An experiment config (``conf/experiment/``) holding the best trial's settings."""
    nested: dict[str, Any] = {}
    for dotted, value in resolved(values).items():
        *parents, leaf = dotted.split(".")
        node = nested
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    head = [f"# {line}" for line in note.splitlines()]
    head.append(f"# Use with: pipelines/train.py {' '.join(fixed)} experiment=<this file's name>")
    return "\n".join(["# @package _global_", *head, yaml.safe_dump(nested, sort_keys=True)])


def study(
    train: Callable[[list[str], int], dict[str, float]],
    space: dict[str, dict[str, Any]],
    n_trials: int,
    seed: int,
    study_name: str,
    storage: str | None = None,
) -> optuna.Study:
    """Maximise ``train(overrides, trial_number)[best_val_acc]`` over ``space``.

    ``storage`` None keeps the study in memory; an RDB URL (the team's PostgreSQL) lets several
    machines share it and a stopped search continue. Sampling is seeded (TPE).
    """
    sampler = optuna.samplers.TPESampler(seed=seed)
    s = optuna.create_study(study_name=study_name, storage=storage, sampler=sampler,
                            direction="maximize", load_if_exists=storage is not None)

    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, space)
        metrics = train(trial_overrides(values), trial.number)
        return metrics[SCORE]

    s.optimize(objective, n_trials=n_trials)
    return s


def write_best(path: Path, s: optuna.Study, fixed: list[str], where: str = "") -> None:
    """Write the best trial as an experiment config, atomically (``where``: a note on where
    its runs are)."""
    best = s.best_trial
    note = (f"Best of {len(s.trials)} trials of study {s.study_name!r}: trial {best.number}, "
            f"validation accuracy {best.value:.4f}" + (f"\n{where}" if where else ""))
    write_atomic(path, best_experiment_yaml(best.params, fixed, note))
    log.info("best trial %d (val acc %.4f) -> %s", best.number, best.value, path)
