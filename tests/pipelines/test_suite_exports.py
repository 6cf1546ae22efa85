"""The default suite packs every binarized run it trains (every binarized model exports)."""

from __future__ import annotations

import yaml

from tests.conftest import ROOT


def test_default_suite_exports_every_binarized_run():
    suite = yaml.safe_load((ROOT / "conf/suite/default.yaml").read_text())
    binarized = {k for k, run in suite["runs"].items() if run["quant"] != "float"}
    binarized |= set(suite["distill_runs"])  # students are binarized by construction
    assert set(suite["exports"]) == binarized
    assert len(suite["exports"]) == len(set(suite["exports"]))
