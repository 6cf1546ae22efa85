"""xnorlab.models: logreg, mlp, cnn, vit, kmeans; built float or binarized by ``build_model``."""

from ..quant.layers import Normalize, Quantize8bit
from .build import EXPORTABLE_MODELS, MODEL_BUILDERS, build_model
from .cnn import build_cnn
from .config import (
    MODEL_CONFIGS,
    CNNConfig,
    KMeansConfig,
    LogRegConfig,
    MLPConfig,
    ViTConfig,
    register_configs,
    to_model_config,
)
from .kmeans import KMeans
from .logreg import build_logreg
from .mlp import build_mlp
from .vit import ViT, build_vit

__all__ = [
    "EXPORTABLE_MODELS",
    "MODEL_BUILDERS",
    "MODEL_CONFIGS",
    "CNNConfig",
    "KMeans",
    "KMeansConfig",
    "LogRegConfig",
    "MLPConfig",
    "Normalize",
    "Quantize8bit",
    "ViT",
    "ViTConfig",
    "build_cnn",
    "build_logreg",
    "build_mlp",
    "build_model",
    "build_vit",
    "register_configs",
    "to_model_config",
]
