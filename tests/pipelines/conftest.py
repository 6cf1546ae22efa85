"""Fixtures of the pipeline tests: tiny MNIST served over HTTP to the download stage."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import write_tiny_mnist


@pytest.fixture
def served_tiny_mnist(tmp_path):
    """Tiny MNIST-named IDX files, gzipped, on an HTTP server at 127.0.0.1."""
    with serve_tiny_mnist(tmp_path) as served:
        yield served


@contextmanager
def serve_tiny_mnist(folder: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The server's URL and the files' SHA-256 digests, while in the block."""
    raw = write_tiny_mnist(folder / "served-raw")
    www = folder / "www"
    www.mkdir()
    digests = {}
    for f in raw.iterdir():
        digests[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()
        (www / f"{f.name}.gz").write_bytes(gzip.compress(f.read_bytes()))
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", digests
    httpd.shutdown()
