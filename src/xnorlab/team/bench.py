"""The team benchmark: concurrent training jobs against each store, then a server load test."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from xnorlab.io import cpu_info
from xnorlab.team.load import load_test
from xnorlab.team.server import TeamServer, private_state_dir
from xnorlab.team.writers import audit, run_sweep

log = logging.getLogger(__name__)


def writers_against(uri: str, raw_dir: Path, work: Path, writers: int,
                    epochs: int) -> dict[str, Any]:
    """Run `writers` jobs at once against `uri`, then audit the store."""
    sweep = run_sweep(writers, raw_dir, uri, work, epochs)
    if sweep["returncode"] != 0:
        log.error("sweep against %s failed:\n%s", uri, sweep["stderr_tail"])
    return {"sweep_returncode": sweep["returncode"], "wall_seconds": sweep["wall_seconds"],
            **audit(uri, work, writers)}


def run_bench(cfg: dict[str, Any]) -> dict[str, Any]:
    """All measurements of conf/team_bench.yaml, as one JSON-ready dict."""
    raw = Path(cfg["raw_dir"]).resolve()
    if not (raw / "mnist").is_dir():
        raise FileNotFoundError(f"{raw / 'mnist'} is missing: run `dvc repro download@mnist` "
                                "or pass raw_dir=<folder holding mnist/>")
    work = Path(cfg["work_dir"] or tempfile.mkdtemp(prefix="xnorlab-team-bench-"))
    result: dict[str, Any] = {
        "machine": {"cpu": cpu_info().model, "cores": os.cpu_count(),
                    "note": "shared machine: other jobs ran at the same time"},
        "writers": cfg["writers"], "stores": {},
    }
    try:
        if "sqlite" in cfg["stores"]:
            uri = f"sqlite:///{work / 'sqlite' / 'mlflow.db'}"
            result["stores"]["sqlite"] = writers_against(
                uri, raw, work / "sqlite", cfg["writers"], cfg["epochs"])
        if "server" in cfg["stores"]:
            with TeamServer(private_state_dir(), cleanup=True) as srv:
                store = writers_against(srv.uri, raw, work / "server", cfg["writers"],
                                        cfg["epochs"])
                store["server_start_seconds"] = srv.start_seconds
                result["stores"]["server_postgresql"] = store
                if cfg["load"]["enabled"]:
                    client = MlflowClient(srv.uri)
                    exp_id = client.create_experiment("load-test")
                    ld = cfg["load"]
                    result["load_test"] = load_test(srv.uri, exp_id, ld["clients"],
                                                    ld["seconds"], ld["metrics_per_request"])
    finally:
        if not cfg["work_dir"]:
            shutil.rmtree(work, ignore_errors=True)
    return result

