"""Fetch a dataset's files from an ordered list of sources, accepting only verified copies.

A file is accepted only when the checksum of its decompressed bytes matches the config. Files are
written to a temporary name in the destination folder and renamed when verified, so an
interrupted download never leaves a file that looks complete. Valid files already present are
kept without any network work.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import tempfile
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xnorlab.data.sources import CHUNK, Source, SourceError
from xnorlab.io import atomic_writer

log = logging.getLogger(__name__)
TMP_SUFFIX = ".partial"


class DownloadError(RuntimeError):
    """No source could provide a verified copy of some file."""


@dataclass(frozen=True)
class FileSpec:
    """A dataset file: its name on disk and the expected digest of its decompressed bytes."""

    key: str
    name: str
    algorithm: str
    digest: str

    @classmethod
    def from_config(cls, key: str, spec: Mapping[str, Any]) -> FileSpec:
        for algorithm in ("sha256", "md5"):
            if spec.get(algorithm):
                return cls(key, spec["name"], algorithm, str(spec[algorithm]).lower())
        raise ValueError(f"file {key!r} ({spec.get('name')}) needs a sha256 or md5 checksum")


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks."""
    h = hashlib.new(algorithm)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def is_valid(path: Path, spec: FileSpec) -> bool:
    """True when `path` exists and its digest matches."""
    return path.is_file() and file_digest(path, spec.algorithm) == spec.digest


def _decompress_verified(src: Path, compression: str, spec: FileSpec, dest: Path) -> None:
    """Decompress `src` into `dest` atomically, only if the digest matches."""
    if compression not in ("gzip", "none"):
        raise SourceError(f"unknown compression {compression!r} (known: gzip, none)")
    opener = gzip.open if compression == "gzip" else open
    h = hashlib.new(spec.algorithm)
    # The digest is checked inside the writer: raising there discards the temporary file.
    with atomic_writer(dest, tmp_suffix=TMP_SUFFIX) as fout:
        try:
            with opener(src, "rb") as fin:
                while chunk := fin.read(CHUNK):
                    h.update(chunk)
                    fout.write(chunk)
        except (EOFError, gzip.BadGzipFile, zlib.error) as err:
            raise SourceError(f"corrupt or truncated {compression} data: {err}") from err
        if h.hexdigest() != spec.digest:
            raise SourceError(
                f"{spec.algorithm} mismatch: got {h.hexdigest()[:16]}..., "
                f"expected {spec.digest[:16]}..."
            )


def _manual_hint(dataset: str, specs: list[FileSpec], dest_dir: Path) -> str:
    lines = "\n".join(f"    {s.name}  {s.algorithm} {s.digest}" for s in specs)
    return (
        f"To place the files by hand: get them from any copy of {dataset} and put them in "
        f"{dest_dir}/ under these names (IDX files decompressed, archives as they are), "
        f"where they must match these checksums:\n{lines}\n"
        "then run the download again; valid files are kept as they are."
    )


def download_dataset(
    dataset_cfg: Mapping[str, Any],
    dest_dir: str | Path,
    timeout_s: float = 10.0,
    progress: bool = True,
) -> dict[str, Path]:
    """Make every file of `dataset_cfg` present and verified in `dest_dir`; return their paths.

    Sources are tried in config order per file. Raises DownloadError naming every source tried
    and why it failed, plus how to place the files by hand.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    for stale in dest_dir.glob(f".*{TMP_SUFFIX}"):  # left by a killed run; never a final file
        stale.unlink()
    specs = [FileSpec.from_config(k, v) for k, v in dataset_cfg["files"].items()]
    paths = {s.key: dest_dir / s.name for s in specs}
    missing = [s for s in specs if not is_valid(paths[s.key], s)]
    for s in specs:
        if s not in missing:
            log.info("%s: present and verified", paths[s.key])
    if not missing:
        return paths

    failures: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="xnorlab-dl-") as work:
        sources = [
            Source(spec, Path(work), timeout_s, progress) for spec in dataset_cfg["sources"]
        ]
        for spec in missing:
            failures[spec.name] = _fetch_one(spec, sources, paths[spec.key])
    failed = {name: why for name, why in failures.items() if why is not None}
    if failed:
        report = "\n".join(
            f"  {name}:\n" + "\n".join(f"    - {line}" for line in why)
            for name, why in failed.items()
        )
        raise DownloadError(
            f"could not get a verified copy of {len(failed)} file(s) of "
            f"{dataset_cfg['name']}; sources tried:\n{report}\n"
            + _manual_hint(dataset_cfg["name"], specs, dest_dir)
        )
    return paths


def _fetch_one(spec: FileSpec, sources: list[Source], dest: Path) -> list[str] | None:
    """Try each source for one file; None on success, else one reason per source."""
    reasons = []
    if dest.exists():
        log.warning("%s: checksum mismatch, replacing it", dest)
    for source in sources:
        where = source.describe(spec.name)
        start = time.perf_counter()
        try:
            local = source.fetch(spec.name)
            _decompress_verified(local, source.compression, spec, dest)
        except SourceError as err:
            reasons.append(f"{where}: {err}")
            log.info("%s: %s from %s failed: %s", spec.key, spec.name, where, err)
            continue
        log.info("%s: fetched from %s in %.1f s", dest, where, time.perf_counter() - start)
        return None
    return reasons
