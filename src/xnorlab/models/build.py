"""``build_model``: one entry point from (model config, quant config) to a model."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from ..quant import lean
from ..quant.config import QuantConfig, to_quant_config
from .cnn import build_cnn
from .config import KMeansConfig, ModelConfig, to_model_config
from .kmeans import KMeans
from .logreg import build_logreg
from .mlp import build_mlp
from .vit import build_vit

__all__ = ["EXPORTABLE_MODELS", "MODEL_BUILDERS", "build_model"]

MODEL_BUILDERS: dict[str, Callable[..., Any]] = {
    "logreg": build_logreg,
    "mlp": build_mlp,
    "cnn": build_cnn,
    "vit": build_vit,
}

#: Models built as an ``nn.Sequential`` of exporter-known modules.
EXPORTABLE_MODELS = ("logreg", "mlp", "cnn")


def _build_kmeans(cfg: KMeansConfig, quant: QuantConfig) -> KMeans:
    metric = cfg.metric
    if metric == "auto":
        metric = "euclidean" if quant.is_float else "hamming"
    return KMeans(
        k=cfg.k,
        metric=metric,
        max_iter=cfg.max_iter,
        tol=cfg.tol,
        n_init=cfg.n_init,
        # A run passes its own seed (train.run.fit_kmeans); elsewhere (reloading fitted
        # centroids) the seed is never used.
        seed=0 if cfg.seed is None else cfg.seed,
    )


def build_model(
    model_cfg: ModelConfig | Mapping[str, Any] | str | Any,
    quant_cfg: QuantConfig | Mapping[str, Any] | str | Any = "float",
    input_shape: Sequence[int] = (1, 28, 28),
    num_classes: int = 10,
    mean: float | Sequence[float] = 0.0,
    std: float | Sequence[float] = 1.0,
) -> nn.Module | KMeans:
    """Build the model named by ``model_cfg.name`` under ``quant_cfg``.

    ``model_cfg`` / ``quant_cfg`` may be dataclasses, dicts, OmegaConf configs or bare names
    (a quant name selects a preset). Input to the model: images as float in [0, 1], shape
    (N, C, H, W) with ``input_shape = (C, H, W)``; ``mean``/``std`` (scalars or per channel)
    are used only by float models' ``Normalize``. logreg/mlp/cnn are ``nn.Sequential``;
    vit is a plain module; kmeans returns a :class:`KMeans` (metric "auto" -> euclidean for
    float, hamming for binarized quants). Unknown names raise ``ValueError``.
    """
    mcfg = to_model_config(model_cfg)
    qcfg = to_quant_config(quant_cfg)
    if mcfg.name == "kmeans":
        return _build_kmeans(mcfg, qcfg)  # type: ignore[arg-type]
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {tuple(input_shape)}")
    builder = MODEL_BUILDERS[mcfg.name]
    model = builder(mcfg, qcfg, tuple(input_shape), num_classes, mean, std)
    if qcfg.lean_backward and not qcfg.is_float:
        lean.install(model)  # quant.lean_backward: bit-packed saved tensors, same gradients
    return model
