"""Schema of the report config (conf/report.yaml), checked before anything runs.

Kept free of torch imports (the train schema pulls in the model code), so the report starts fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf

from xnorlab.schema import validate


@dataclass
class ReportSettings:
    out_dir: str = "reports"
    benchmark: str | None = "reports/benchmark.json"  # optional input
    bench_threads: int | None = 1  # which thread count of the benchmark to report; null: most
    include_unlisted: bool = False  # also report suite-tagged runs the suite does not list
    plots: bool = True
    dpi: int = 110
    log_to_mlflow: bool = True
    log_unchanged: bool = False  # log a new report run even when the outputs did not change
    update_readme: bool = False  # rewrite Table 1 between the README's results markers
    readme: str = "README.md"


@dataclass
class ReportTracking:
    uri: str | None = None
    experiment: str = "xnorlab"
    artifact_root: str = "mlartifacts"
    log_checkpoint: bool = True  # unused here; the tracking group is shared with training


@dataclass
class ReportSuite:
    name: str = "default"
    datasets: list[str] = field(default_factory=list)
    runs: dict[str, Any] = field(default_factory=dict)
    distill_runs: dict[str, Any] = field(default_factory=dict)


def _known(node: DictConfig, schema: type) -> DictConfig:
    """The keys of `node` that `schema` knows: the suite and tracking groups are shared with
    other stages and grow keys this stage does not read (a suite's `exports`, ...)."""
    keys = {f.name for f in fields(schema)}
    return OmegaConf.create({k: v for k, v in OmegaConf.to_container(node, resolve=True).items()
                             if k in keys})


def check_report_config(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as a plain dict, each part checked against its schema (raises
    xnorlab.schema.ConfigError naming the bad key). `report` is checked strictly; of the shared
    groups only the keys read here are checked."""
    checked = {
        "report": validate(cfg.report, ReportSettings, "report"),
        "tracking": validate(_known(cfg.tracking, ReportTracking), ReportTracking, "tracking"),
        "suite": validate(_known(cfg.suite, ReportSuite), ReportSuite, "suite"),
    }
    return {k: OmegaConf.to_container(v, resolve=True) for k, v in checked.items()}
