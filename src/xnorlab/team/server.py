"""Start and stop the team server (PostgreSQL + mlflow server) through scripts/server.sh."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from xnorlab.tracking import project_root

SCRIPT = project_root() / "scripts" / "server.sh"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that the OS says is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_state_dir(prefix: str = "xnorlab-server-") -> Path:
    """A fresh state folder that the `postgres` system user can reach (pytest's tmp folders
    are private to root, and PostgreSQL refuses to run as root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@dataclass
class TeamServer:
    """One server instance: its state folder, ports and optional basic-auth app.

    Use as a context manager: ``with TeamServer(dir) as srv: srv.uri``; it is stopped (whole
    process group, then PostgreSQL) on exit, and ``cleanup`` deletes the state folder.
    """

    state_dir: Path
    port: int = field(default_factory=free_port)
    pg_port: int = field(default_factory=free_port)
    app: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cleanup: bool = False
    start_seconds: float = 0.0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self, action: str, timeout: float) -> subprocess.CompletedProcess:
        env = {**os.environ, **self.env, "SERVER_DIR": str(self.state_dir),
               "MLFLOW_PORT": str(self.port), "PG_PORT": str(self.pg_port),
               "MLFLOW_APP": self.app or ""}
        return subprocess.run(["bash", str(SCRIPT), action], env=env, capture_output=True,
                              text=True, timeout=timeout)

    def up(self, timeout: float = 240) -> TeamServer:
        start = time.perf_counter()
        proc = self._run("up", timeout)
        if proc.returncode != 0:
            log = self.state_dir / "mlflow.log"
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise RuntimeError(f"server.sh up failed ({proc.returncode}):\n{proc.stderr}\n{tail}")
        self.start_seconds = time.perf_counter() - start
        return self

    def down(self) -> None:
        self._run("down", 120)
        if self.cleanup:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.uri}/health", timeout=2).ok
        except requests.RequestException:
            return False

    def pgid(self) -> int | None:
        f = self.state_dir / "mlflow.pgid"
        return int(f.read_text()) if f.exists() else None

    def __enter__(self) -> TeamServer:
        try:
            return self.up()
        except BaseException:
            self.down()
            raise

    def __exit__(self, *exc: object) -> None:
        self.down()
