"""Model configs (Hydra structured configs); ``conf/model/<name>.yaml`` mirrors the defaults.

Widths here are small defaults for 2-core CPU machines; the BNN paper's values are noted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MODEL_CONFIGS",
    "CNNConfig",
    "KMeansConfig",
    "LogRegConfig",
    "MLPConfig",
    "ViTConfig",
    "register_configs",
    "to_model_config",
]


@dataclass
class LogRegConfig:
    """Flatten -> one (binary-kernel) linear layer -> BatchNorm1d -> scores."""

    name: str = "logreg"
    bn_momentum: float = 0.1  # PyTorch sense (= Lasagne alpha 0.1 of the BNN Theano code)
    bn_eps: float = 1e-4


@dataclass
class MLPConfig:
    """``depth`` hidden layers of ``hidden`` units (BNN paper: 3 x 4096, dropout 0.2 / 0.5)."""

    name: str = "mlp"
    hidden: int = 1024
    depth: int = 3
    dropout_input: float = 0.0
    dropout_hidden: float = 0.0
    bn_momentum: float = 0.1
    bn_eps: float = 1e-4


@dataclass
class CNNConfig:
    """BNN paper VGG-like net: (2xC3)-MP2-(2xC3)-MP2-(2xC3)-MP2-(fc_depth x FC)-classes.

    Conv channels are ``width, 2*width, 4*width`` per stage (paper: width 128, fc_width 1024).
    """

    name: str = "cnn"
    width: int = 32
    fc_width: int = 256
    fc_depth: int = 2
    dropout: float = 0.0  # before each fully connected layer
    bn_momentum: float = 0.1
    bn_eps: float = 1e-4


@dataclass
class ViTConfig:
    """Small pre-norm Vision Transformer (see ``xnorlab.models.vit``)."""

    name: str = "vit"
    patch_size: int = 4
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    pool: str = "mean"  # "mean" (token average) or "cls" (class token)
    layer_scale_init: float = 0.1  # LayerScale gain on residual branches (1.0 = plain ViT)


@dataclass
class KMeansConfig:
    """k-means baseline; ``metric="auto"`` = euclidean for float quant, hamming otherwise."""

    name: str = "kmeans"
    k: int = 10
    metric: str = "auto"  # "auto", "euclidean" or "hamming"
    max_iter: int = 100
    tol: float = 1e-4
    n_init: int = 1
    seed: int | None = None  # None: the run's seed, so each seed of a sweep starts elsewhere


MODEL_CONFIGS: dict[str, type] = {
    "logreg": LogRegConfig,
    "mlp": MLPConfig,
    "cnn": CNNConfig,
    "vit": ViTConfig,
    "kmeans": KMeansConfig,
}

ModelConfig = LogRegConfig | MLPConfig | CNNConfig | ViTConfig | KMeansConfig


def _config_class(name: Any) -> type:
    try:
        return MODEL_CONFIGS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown model {name!r}; valid names: {', '.join(sorted(MODEL_CONFIGS))}"
        ) from None


def to_model_config(cfg: ModelConfig | Mapping[str, Any] | str | Any) -> ModelConfig:
    """Coerce a dataclass, dict, OmegaConf ``DictConfig`` or bare name into the model's config
    dataclass. The ``name`` key selects the class; unknown names or keys raise."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        _config_class(getattr(cfg, "name", None))
        return dataclasses.replace(cfg)  # type: ignore[type-var]
    if isinstance(cfg, str):
        return _config_class(cfg)()
    from omegaconf import OmegaConf

    name = cfg.get("name") if hasattr(cfg, "get") else None
    cls = _config_class(name)
    merged = OmegaConf.merge(OmegaConf.structured(cls), cfg)
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def register_configs(cs: Any = None, group: str = "model") -> None:
    """Store each schema as ``base_<name>`` in ``group`` of Hydra's ConfigStore (the YAML files
    are plain; they can opt in with ``defaults: [base_<name>, _self_]``)."""
    if cs is None:
        from hydra.core.config_store import ConfigStore

        cs = ConfigStore.instance()
    for name, cls in MODEL_CONFIGS.items():
        cs.store(group=group, name=f"base_{name}", node=cls)
