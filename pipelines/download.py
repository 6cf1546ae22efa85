"""DVC stage `download@<dataset>`: fetch and verify one dataset into data/raw/<dataset>/."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from xnorlab.data.download import DownloadError, download_dataset
from xnorlab.entry import entry_point
from xnorlab.schema import ConfigError, DatasetConfig, DownloadConfig, validate

log = logging.getLogger("xnorlab.download")


@entry_point("download")
def main(cfg: DictConfig) -> None:
    try:
        dataset = validate(cfg.dataset, DatasetConfig, "dataset")
        settings = validate(cfg.download, DownloadConfig, "download")
    except ConfigError as err:
        sys.exit(f"error: {err}")
    dest = Path(settings.raw_dir) / dataset.name
    start = time.perf_counter()
    try:
        paths = download_dataset(
            OmegaConf.to_container(dataset), dest, settings.timeout_s, settings.progress
        )
    except DownloadError as err:
        sys.exit(f"error: {err}")
    log.info("%s ready in %s (%d files, %.1f s)", dataset.name, dest, len(paths),
             time.perf_counter() - start)


if __name__ == "__main__":
    main()
