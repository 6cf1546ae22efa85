"""Places a dataset file can come from: public HTTP mirrors, and npm / Debian package copies.

Each source turns a file name into a local file (still compressed as the source serves it).
Package sources fetch their package once per download session and serve every file from it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

CHUNK = 1 << 20


class SourceError(RuntimeError):
    """A source could not provide a file; the message says why."""


def _http_fetch(url: str, out: Path, timeout_s: float, progress: bool) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp, out.open("wb") as f:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                disable=not progress, leave=False,
            ) as bar:
                received = 0
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            # read(n) returns short at a dropped connection instead of raising: check the length.
            if total is not None and received != total:
                raise SourceError(f"transfer failed: got {received} of {total} bytes")
    except urllib.error.HTTPError as err:
        raise SourceError(f"HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        raise SourceError(f"cannot connect: {err.reason}") from err
    except TimeoutError as err:
        raise SourceError(f"no data for {timeout_s:g} s (stalled)") from err
    except OSError as err:  # http.client.IncompleteRead, resets: a cut-off transfer
        raise SourceError(f"transfer failed: {err!r}") from err


def _run(cmd: list[str], cwd: Path, timeout_s: float) -> str:
    if shutil.which(cmd[0]) is None:
        raise SourceError(f"`{cmd[0]}` is not installed")
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as err:
        raise SourceError(f"`{' '.join(cmd)}` took longer than {timeout_s:g} s") from err
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise SourceError(f"`{' '.join(cmd)}` failed: {last[0]}")
    return proc.stdout


class Source:
    """One entry of a dataset's `sources` list."""

    def __init__(self, spec: Mapping[str, Any], workdir: Path, timeout_s: float, progress: bool):
        self.spec = dict(spec)
        self.kind: str = self.spec["kind"]
        self.compression: str = self.spec.get("compression", "none")
        self.workdir = workdir
        self.timeout_s = timeout_s
        self.progress = progress
        self._package_root: Path | None = None
        self._package_error: SourceError | None = None

    def describe(self, name: str) -> str:
        if self.kind == "http":
            return self.spec["url"].format(name=name)
        member = self.spec["member"].format(name=name)
        return f"{self.kind} package {self.spec['package']} ({member})"

    def fetch(self, name: str) -> Path:
        """Return a local path holding `name` as this source serves it."""
        if self.kind == "http":
            fd, tmp = tempfile.mkstemp(prefix=f"http-{name}-", dir=self.workdir)
            os.close(fd)
            out = Path(tmp)
            _http_fetch(self.spec["url"].format(name=name), out, self.timeout_s, self.progress)
            return out
        if self.kind in ("npm", "apt"):
            member = self._package() / self.spec["member"].format(name=name)
            if not member.is_file():
                raise SourceError(f"package has no file {self.spec['member'].format(name=name)}")
            return member
        raise SourceError(f"unknown source kind {self.kind!r} (known: http, npm, apt)")

    def _package(self) -> Path:
        # Fetch the package once; remember a failure so the next file fails fast.
        if self._package_error is not None:
            raise self._package_error
        if self._package_root is None:
            try:
                self._package_root = self._fetch_package()
            except SourceError as err:
                self._package_error = err
                raise
        return self._package_root

    def _fetch_package(self) -> Path:
        package = self.spec["package"]
        pkg_dir = self.workdir / f"{self.kind}-{package.replace('/', '_')}"
        pkg_dir.mkdir(parents=True, exist_ok=True)
        extracted = pkg_dir / "root"
        if self.kind == "npm":
            out = _run(["npm", "pack", package, "--silent"], pkg_dir, self.timeout_s * 6)
            tgz = pkg_dir / out.strip().splitlines()[-1]
            with tarfile.open(tgz, "r:gz") as tar:
                tar.extractall(extracted, filter="data")
        else:
            hint = " (run `apt-get update` first?)"
            try:
                _run(["apt-get", "download", package], pkg_dir, self.timeout_s * 6)
            except SourceError as err:
                raise SourceError(f"{err}{hint}") from err
            debs = sorted(pkg_dir.glob("*.deb"))
            if not debs:
                raise SourceError(f"apt-get download {package} produced no .deb{hint}")
            _run(["dpkg-deb", "-x", str(debs[-1]), str(extracted)], pkg_dir, self.timeout_s * 6)
        return extracted
