"""Quantizer registry, QuantConfig presets and the conf/quant YAML files."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from xnorlab.quant import (
    QUANT_PRESETS,
    QuantConfig,
    SteSign,
    StochasticSign,
    XnorWeight,
    available_quantizers,
    get_quantizer,
    quant_preset,
    register_configs,
    to_quant_config,
)

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_registry_names_and_none():
    assert available_quantizers() == ["ste_sign", "stoch_sign", "xnor_weight"]
    assert isinstance(get_quantizer("ste_sign"), SteSign)
    assert isinstance(get_quantizer("stoch_sign"), StochasticSign)
    assert isinstance(get_quantizer("xnor_weight"), XnorWeight)
    assert get_quantizer(None) is None and get_quantizer("null") is None
    q = SteSign()
    assert get_quantizer(q) is q


def test_unknown_quantizer_lists_valid_names():
    with pytest.raises(
        ValueError, match="unknown quantizer 'sgn'.*ste_sign, stoch_sign, xnor_weight"
    ):
        get_quantizer("sgn")


def test_unknown_quant_method_lists_valid_names():
    with pytest.raises(ValueError, match="bc_det, bc_stoch, bnn, bnn_stoch, float, xnor"):
        quant_preset("binaryconnect")
    with pytest.raises(ValueError, match="unknown quantizer"):
        to_quant_config({"name": "x", "weight_quantizer": "nope"})


def test_quant_yaml_files_match_presets():
    files = sorted(p.stem for p in (CONF / "quant").glob("*.yaml"))
    assert files == sorted(QUANT_PRESETS)
    for name in files:
        cfg = to_quant_config(OmegaConf.load(CONF / "quant" / f"{name}.yaml"))
        assert cfg == QUANT_PRESETS[name], name
        assert cfg.name == name


def test_preset_semantics():
    assert quant_preset("float").is_float and not quant_preset("float").clip_latent
    for n in ("bc_det", "bc_stoch"):
        assert quant_preset(n).weight_quantizer and not quant_preset(n).binary_activations
    for n in ("bnn", "bnn_stoch", "xnor"):
        assert quant_preset(n).binary_activations
    assert quant_preset("xnor").weight_quantizer == "xnor_weight"
    assert not quant_preset("xnor").activation_scale


def test_to_quant_config_rejects_unknown_keys_and_bad_flags():
    with pytest.raises(Exception, match="wq"):
        to_quant_config({"name": "bnn", "wq": "ste_sign"})
    with pytest.raises(ValueError, match="activation_scale"):
        to_quant_config(
            QuantConfig(name="x", weight_quantizer="xnor_weight", activation_scale=True)
        )
    assert to_quant_config("bnn") == quant_preset("bnn")


def test_register_configs_stores_schema():
    stored = {}

    class FakeStore:
        def store(self, group, name, node):
            stored[(group, name)] = node

    register_configs(FakeStore())
    assert stored == {("quant", "base_quant"): QuantConfig}
