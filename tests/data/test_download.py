"""Download fallback and verification against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import http.server
import threading
import time
from collections import Counter
from hashlib import sha256
from pathlib import Path

import pytest

from xnorlab.data.download import TMP_SUFFIX, DownloadError, download_dataset

PAYLOAD = bytes(range(256)) * 40  # stands in for an IDX file
GOOD_GZ = gzip.compress(PAYLOAD)


class Handler(http.server.BaseHTTPRequestHandler):
    hits: Counter = Counter()

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        kind = self.path.strip("/").split("/")[0]
        Handler.hits[kind] += 1
        if kind == "good":
            self._send(GOOD_GZ)
        elif kind == "corrupt":  # valid gzip, wrong bytes inside
            self._send(gzip.compress(PAYLOAD[::-1]))
        elif kind == "truncated":  # complete transfer of a cut-off gzip file
            self._send(GOOD_GZ[: len(GOOD_GZ) // 2])
        elif kind == "cut":  # promises the whole file, sends half, hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(GOOD_GZ)))
            self.end_headers()
            self.wfile.write(GOOD_GZ[: len(GOOD_GZ) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif kind == "stall":
            self.send_response(200)
            self.send_header("Content-Length", str(len(GOOD_GZ)))
            self.end_headers()
            time.sleep(2.0)
        else:
            self.send_error(404)

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(autouse=True)
def reset_hits():
    Handler.hits.clear()


def dataset(server: str, *kinds: str) -> dict:
    return {
        "name": "toy",
        "files": {"blob": {"name": "blob-idx1-ubyte", "sha256": sha256(PAYLOAD).hexdigest()}},
        "sources": [
            {"kind": "http", "url": f"{server}/{k}/{{name}}.gz", "compression": "gzip"}
            for k in kinds
        ],
    }


def fetch(cfg: dict, dest: Path) -> dict[str, Path]:
    return download_dataset(cfg, dest, timeout_s=0.5, progress=False)


def test_falls_back_in_order_until_a_copy_verifies(server, tmp_path):
    paths = fetch(dataset(server, "stall", "corrupt", "truncated", "good"), tmp_path)
    assert paths["blob"].read_bytes() == PAYLOAD
    assert [Handler.hits[k] for k in ("stall", "corrupt", "truncated", "good")] == [1, 1, 1, 1]


def test_stops_at_the_first_good_source(server, tmp_path):
    fetch(dataset(server, "good", "corrupt"), tmp_path)
    assert Handler.hits["corrupt"] == 0


def test_all_sources_failing_names_each_source_and_reason(server, tmp_path):
    cfg = dataset(server, "stall", "corrupt", "truncated", "cut", "missing")
    with pytest.raises(DownloadError) as err:
        fetch(cfg, tmp_path)
    message = str(err.value)
    for kind, reason in [
        ("stall", "stalled"),
        ("corrupt", "sha256 mismatch"),
        ("truncated", "truncated"),
        ("cut", "transfer failed"),
        ("missing", "HTTP 404"),
    ]:
        line = next(x for x in message.splitlines() if f"/{kind}/" in x)
        assert reason in line, line
    assert "by hand" in message and str(tmp_path) in message
    assert not (tmp_path / "blob-idx1-ubyte").exists()


def test_interrupted_transfer_leaves_no_final_or_temp_file(server, tmp_path):
    with pytest.raises(DownloadError):
        fetch(dataset(server, "cut"), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_stale_partial_file_from_a_killed_run_is_removed(server, tmp_path):
    stale = tmp_path / f".blob-idx1-ubyte.abc{TMP_SUFFIX}"
    stale.write_bytes(PAYLOAD[:10])
    fetch(dataset(server, "good"), tmp_path)
    assert not stale.exists()


def test_second_run_does_no_network_work(server, tmp_path):
    cfg = dataset(server, "good")
    fetch(cfg, tmp_path)
    assert Handler.hits["good"] == 1
    fetch(cfg, tmp_path)
    assert Handler.hits["good"] == 1


def test_corrupted_local_file_is_detected_and_replaced(server, tmp_path):
    cfg = dataset(server, "good")
    path = fetch(cfg, tmp_path)["blob"]
    path.write_bytes(PAYLOAD[:-1] + b"\x00")
    fetch(cfg, tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert Handler.hits["good"] == 2


def test_missing_checksum_is_a_config_error(tmp_path):
    cfg = {"name": "toy", "files": {"blob": {"name": "x"}}, "sources": []}
    with pytest.raises(ValueError, match="sha256 or md5"):
        fetch(cfg, tmp_path)
