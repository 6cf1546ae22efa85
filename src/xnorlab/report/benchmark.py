"""The benchmark stage's `reports/benchmark.json`, an optional input: speed of the packed engine
against float PyTorch per model, engine, thread count and batch size."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FLOAT_ENGINE = "torch_float32"
PACKED_ENGINES = ("packed_fast", "packed_numpy")  # preferred first


@dataclass(frozen=True)
class Speed:
    """Median images/s of one model at one batch size (None: not measured)."""

    batch: int
    float_ips: float | None
    packed_ips: float | None
    packed_engine: str | None

    @property
    def speedup(self) -> float | None:
        if self.float_ips and self.packed_ips is not None:
            return self.packed_ips / self.float_ips
        return None


@dataclass
class Benchmark:
    path: str
    data: dict[str, Any]
    threads: int  # the thread count reported

    @property
    def cpu(self) -> str:
        return str(self.data.get("machine", {}).get("cpu", "unknown CPU"))

    def results(self, key: str) -> list[dict[str, Any]]:
        """The model's results at the reported thread count."""
        entry = self.data.get("models", {}).get(key) or {}
        return [r for r in entry.get("results", []) if r.get("threads") == self.threads]

    @property
    def batches(self) -> list[int]:
        """Every batch size measured at the reported thread count, ascending."""
        return sorted({int(r["batch"]) for key in self.data.get("models", {})
                       for r in self.results(key)})

    def entry(self, key: str) -> dict[str, Any] | None:
        return self.data.get("models", {}).get(key)

    def speeds(self, key: str) -> dict[int, Speed]:
        """Per benchmarked batch size: float and packed images/s of the model `key`."""
        results = self.results(key)

        def ips(engine: str, batch: int) -> float | None:
            for r in results:
                if r.get("engine") == engine and r.get("batch") == batch:
                    return float(r["images_per_s_median"])
            return None

        engine = next((e for e in PACKED_ENGINES if any(r.get("engine") == e for r in results)),
                      None)
        return {
            b: Speed(b, ips(FLOAT_ENGINE, b), ips(engine, b) if engine else None, engine)
            for b in self.batches
        }


def load_benchmark(path: str | None, threads: int | None) -> tuple[Benchmark | None, str | None]:
    """The benchmark, or None and the reason (missing file, unreadable file) for a note.

    `threads`: the thread count to report; when the benchmark has no results at it, the
    smallest measured thread count is used (None: the largest)."""
    if not path:
        return None, "no benchmark configured (report.benchmark=null)"
    p = Path(path)
    if not p.is_file():
        return None, f"no `{path}`: run the benchmark stage for speed figures"
    try:
        data = json.loads(p.read_text())
        measured = sorted({int(r["threads"]) for m in data.get("models", {}).values()
                           for r in m.get("results", [])})
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        log.warning("ignoring unreadable %s: %s", path, err)
        return None, f"`{path}` is unreadable ({type(err).__name__}); speed figures left out"
    if not measured:
        return None, f"`{path}` holds no results"
    chosen = threads if threads in measured else (measured[-1] if threads is None else measured[0])
    return Benchmark(str(path), data, chosen), None
