"""Quantizer registry, QuantConfig presets and the conf/quant YAML files."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from xnorlab.quant import (
    QuantConfig,
    SteSign,
    StochasticSign,
    XnorWeight,
    available_presets,
    available_quantizers,
    get_quantizer,
    quant_preset,
    quantizer_class,
    register_configs,
    to_quant_config,
)

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_registry_names_and_none():
    assert {"ste_sign", "stoch_sign", "xnor_weight"} <= set(available_quantizers())
    assert isinstance(get_quantizer("ste_sign"), SteSign)
    assert isinstance(get_quantizer("stoch_sign"), StochasticSign)
    assert isinstance(get_quantizer("xnor_weight"), XnorWeight)
    assert get_quantizer(None) is None and get_quantizer("null") is None
    q = SteSign()
    assert get_quantizer(q) is q


def test_unknown_quantizer_lists_valid_names():
    valid = ", ".join(available_quantizers())
    with pytest.raises(ValueError, match=f"unknown quantizer 'sgn'; valid names: {valid}"):
        get_quantizer("sgn")


def test_unknown_quant_method_lists_valid_names():
    with pytest.raises(ValueError, match=", ".join(sorted(available_presets()))):
        quant_preset("binaryconnect")
    with pytest.raises(ValueError, match="unknown quantizer"):
        to_quant_config({"name": "x", "weight_quantizer": "nope"})


def test_presets_are_the_quant_yaml_files():
    files = sorted(p.stem for p in (CONF / "quant").glob("*.yaml"))
    assert sorted(available_presets()) == files and available_presets()[0] == "float"
    for name in files:
        cfg = to_quant_config(OmegaConf.load(CONF / "quant" / f"{name}.yaml"))
        assert cfg == quant_preset(name) and cfg.name == name and cfg.label, name


def test_quantizers_declare_capabilities():
    assert quantizer_class("stoch_sign").stochastic and not quantizer_class("ste_sign").stochastic
    assert quantizer_class("xnor_weight").scaled and not quantizer_class("ste_sign").scaled
    for name in available_quantizers():
        cls = quantizer_class(name)
        assert cls.name == name and cls.binary and cls.exportable
    assert get_quantizer("stoch_sign").deterministic_eval
    assert not get_quantizer("stoch_sign", stochastic_eval=True).deterministic_eval
    assert get_quantizer("ste_sign", stochastic_eval=True).deterministic_eval


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
