"""Check the report config (conf/report.yaml) before anything runs (torch-free, so the report
starts fast)."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from xnorlab.schema import ReportConfig, checked


def check_report_config(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as a plain dict, checked against its schema (raises
    xnorlab.schema.ConfigError naming the bad key)."""
    return checked(cfg, ReportConfig, "report")
