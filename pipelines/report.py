"""DVC stage `report` and Hydra entry point: turn a suite's MLflow runs into tables and plots.

    python pipelines/report.py                              # suite=default -> reports/
    python pipelines/report.py suite=paper report.out_dir=reports/paper
    python pipelines/report.py report.update_readme=true    # also refresh README's Table 1
"""

from __future__ import annotations

import logging
import sys

from omegaconf import DictConfig

from xnorlab.entry import entry_point
from xnorlab.io import exit_on_full_disk
from xnorlab.report.build import make_report
from xnorlab.report.config import check_report_config
from xnorlab.report.readme import MarkersError
from xnorlab.schema import ConfigError

log = logging.getLogger("xnorlab.report")


@entry_point("report")
def main(cfg: DictConfig) -> None:
    try:
        checked = check_report_config(cfg)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    try:
        with exit_on_full_disk():
            result = make_report(checked)
    except MarkersError as err:
        sys.exit(f"error: {checked['report']['readme']}: {err}")
    missing = [r.slot.key for r in result.records if not r.finished]
    if missing:
        log.warning("no finished run for %s (shown as a dash)", ", ".join(missing))


if __name__ == "__main__":
    main()
