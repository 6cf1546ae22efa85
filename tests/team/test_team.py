"""The team server and concurrent writers: 8 parallel smoke jobs against SQLite and against
PostgreSQL behind `mlflow server`, counted record by record; a bounded load test; basic auth."""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
from pathlib import Path

import pytest
import requests
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tests.team.fixtures import WRITERS
from xnorlab import tracking
from xnorlab.team.bench import writers_against
from xnorlab.team.load import load_test
from xnorlab.team.server import TeamServer, private_state_dir

pytestmark = [pytest.mark.team, pytest.mark.slow]  # servers and 8-job sweeps: minutes


def assert_nothing_lost(result: dict) -> None:
    for kind in ("runs", "params", "metric_steps", "artifacts"):
        tally = result[kind]
        assert tally["expected"] > 0, kind
        assert tally["lost"] == 0 and tally["duplicated"] == 0, (kind, tally)
        assert tally["stored"] == tally["expected"], (kind, tally)
    assert result["sweep_returncode"] == 0 and result["failed_jobs"] == []
    assert result["sweep_parents"] == 1 and result["jobs_nested_under_parent"] == WRITERS


def test_prepared_sqlite_store_is_wal_with_schema_and_a_training_experiment(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.prepare_store(uri)
    assert tracking.sqlite_journal_mode(uri) == "wal"
    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"experiments", "runs", "metrics", "params", "alembic_version"} <= tables
    tracking.prepare_store(uri)  # idempotent
    client, exp_id, _ = tracking.open_experiment(
        {"uri": uri, "experiment": "x", "artifact_root": str(tmp_path / "a")})
    tags = client.get_experiment(exp_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert "metrics.`test_error_pct`" in tags[f"mlflow.sharedViewState.{tracking.VIEW_KEY}"]


def test_eight_parallel_jobs_lose_nothing_in_sqlite(tmp_path, tiny_raw):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = writers_against(uri, tiny_raw, tmp_path / "work", WRITERS, epochs=2)
    assert_nothing_lost(result)
    # the multirun's callback prepared the store before the jobs started
    assert tracking.sqlite_journal_mode(uri) == "wal"


def test_eight_parallel_jobs_lose_nothing_through_the_server(server_sweep):
    assert_nothing_lost(server_sweep.result)
    srv = server_sweep.server
    # artifacts went over HTTP into the server's store, not into a local folder
    stored = list((srv.state_dir / "artifacts").rglob("best.ckpt"))
    assert len(stored) == WRITERS
    assert not (server_sweep.root / "work" / "artifacts").exists()
    client = MlflowClient(srv.uri)
    exp = client.get_experiment_by_name("xnorlab")
    assert exp.artifact_location.startswith("mlflow-artifacts:")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"


def test_bounded_load_test_stores_every_point(team_server):
    client = MlflowClient(team_server.uri)
    exp_id = client.create_experiment(f"load-{secrets.token_hex(4)}")
    res = load_test(team_server.uri, exp_id, clients=32, seconds=3.0, batch=10)
    assert res["errors"] == 0 and res["requests_ok"] > 0
    assert res["points_stored"] == res["points_sent_ok"]
    assert 0 < res["latency_p50_ms"] <= res["latency_p99_ms"] <= res["latency_max_ms"]


def _server_processes(state_dir: Path) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if str(state_dir) in line]


def test_basic_auth_rejects_anonymous_and_wrong_password_and_stops_clean(tmp_path,
                                                                         monkeypatch):
    password = secrets.token_urlsafe(12)
    srv = TeamServer(private_state_dir(), app="basic-auth", cleanup=True,
                     env={"MLFLOW_AUTH_ADMIN_PASSWORD": password})
    with srv:
        api = f"{srv.uri}/api/2.0/mlflow/experiments/search"
        assert requests.get(api, params={"max_results": 1}, timeout=10).status_code == 401
        bad = requests.get(api, params={"max_results": 1}, auth=("admin", "wrong"), timeout=10)
        assert bad.status_code == 401
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        with pytest.raises(MlflowException):
            MlflowClient(srv.uri).create_run("0")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        run = MlflowClient(srv.uri).create_run("0")
        assert MlflowClient(srv.uri).get_run(run.info.run_id).info.status == "RUNNING"
        pgid = srv.pgid()
        assert pgid and _server_processes(srv.state_dir)
    # stopped: the server's whole process group and PostgreSQL are gone, nothing orphaned
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)
    assert _server_processes(srv.state_dir) == [] and not srv.healthy()


def test_server_script_refuses_a_taken_port(team_server):
    other = TeamServer(private_state_dir(), port=team_server.port, cleanup=True)
    with pytest.raises(RuntimeError, match="already answers"):
        other.up()
    other.down()
    assert team_server.healthy()

