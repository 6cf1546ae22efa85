"""Counting outcomes: per fault class, cases tried, survived, records lost, and what went wrong."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Tally:
    """One fault class. A case survives when no check found a problem; ``lost`` counts records
    (history rows, MLflow metric rows, finished files) that a fault destroyed."""

    tried: int = 0
    survived: int = 0
    lost: int = 0
    duplicated: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    cases: list[dict[str, Any]] = field(default_factory=list)
    skipped: str | None = None  # why the class could not run here (e.g. no root for tmpfs)

    def add(self, case: str, problems: list[str], lost: int = 0, duplicated: int = 0,
            **facts: Any) -> None:
        self.tried += 1
        self.lost += lost
        self.duplicated += duplicated
        if problems:
            self.failures.append({"case": case, "problems": problems})
        else:
            self.survived += 1
        self.cases.append({"case": case, "ok": not problems, **facts})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summary(tallies: dict[str, Tally]) -> dict[str, Any]:
    """The report's per-class figures and totals."""
    classes = {name: {**t.as_dict(), "by_kind": by_kind(t)} for name, t in tallies.items()}
    total = {k: sum(t[k] for t in classes.values())
             for k in ("tried", "survived", "lost", "duplicated")}
    return {"classes": classes, "total": total}


def by_kind(tally: Tally) -> dict[str, dict[str, int]]:
    """Cases tried and survived per kind, the part of a case's name before its first colon
    (``config-train:bitflip`` -> ``config-train``; ``train:step:7`` -> ``train``)."""
    out: dict[str, dict[str, int]] = {}
    for case in tally.cases:
        kind = out.setdefault(case["case"].split(":")[0], {"tried": 0, "survived": 0})
        kind["tried"] += 1
        kind["survived"] += bool(case["ok"])
    return out
