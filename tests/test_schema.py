"""Config validation: misspelt or missing keys fail with a clear message."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from xnorlab.schema import ConfigError, DatasetConfig, validate


def test_every_dataset_config_validates():
    for name in ("mnist", "fashion_mnist", "cifar10"):
        cfg = validate(OmegaConf.load(f"conf/dataset/{name}.yaml"), DatasetConfig, "dataset")
        assert cfg.name == name and len(cfg.classes) == cfg.num_classes


def test_misspelt_key_is_rejected():
    node = OmegaConf.load("conf/dataset/mnist.yaml")
    node.num_clases = 10
    with pytest.raises(ConfigError, match="num_clases"):
        validate(node, DatasetConfig, "dataset")
