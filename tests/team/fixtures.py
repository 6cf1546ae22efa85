"""Session fixtures shared by tests/team and tests/ui (registered in tests/conftest.py): one
team server on free loopback ports, and one 8-job sweep logged to it over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import write_tiny_mnist
from xnorlab.team.bench import writers_against
from xnorlab.team.server import TeamServer, private_state_dir

WRITERS = 8


@dataclass
class Sweep:
    server: TeamServer
    root: Path      # raw/ (tiny data) and work/ (models/, sweep/)
    result: dict[str, Any]


@pytest.fixture(scope="session")
def team_server() -> Iterator[TeamServer]:
    with TeamServer(private_state_dir(), cleanup=True) as srv:
        yield srv


@pytest.fixture(scope="session")
def server_sweep(team_server: TeamServer, tmp_path_factory) -> Sweep:
    root = tmp_path_factory.mktemp("team-sweep")
    write_tiny_mnist(root / "raw")
    result = writers_against(team_server.uri, root / "raw", root / "work", WRITERS, epochs=2)
    return Sweep(team_server, root, result)
