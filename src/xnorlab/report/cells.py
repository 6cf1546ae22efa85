"""What a table is: display cells (text, footnote numbers, the run id behind a value), columns,
numbered notes and tidy records, plus the number formats the cells use. Builders live in
:mod:`xnorlab.report.tables`, renderers in :mod:`xnorlab.report.render`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DASH = "—"


# ---------------------------------------------------------------- structure


@dataclass
class Cell:
    text: str = ""
    notes: list[int] = field(default_factory=list)
    run_id: str | None = None  # Markdown shows its first 8 characters after the value


@dataclass
class Column:
    title: str
    align: str = "r"  # l | r
    latex: bool = True  # False: Markdown only (run ids)


class Notes:
    """Footnotes of one table, numbered from 1 in order of first use; equal texts share one."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def add(self, text: str) -> int:
        if text not in self.texts:
            self.texts.append(text)
        return self.texts.index(text) + 1


@dataclass
class Table:
    name: str  # table1 -> table1.csv, \label{tab:xnorlab-table1}
    title: str
    caption: str
    columns: list[Column]
    rows: list[list[Cell]]
    notes: Notes
    fields: list[str]  # CSV columns
    records: list[dict[str, Any]]  # CSV rows (raw values; None -> empty)
    cell_ids: bool = False  # Markdown: short run id after each value
    group_cols: int = 1  # leading columns blanked when repeated; LaTeX rule between groups
    extra_md: str = ""  # appended under the Markdown table


# ---------------------------------------------------------------- formatting


def fmt_fixed(digits: int) -> Callable[[float], str]:
    return lambda v: f"{v:.{digits}f}"


def fmt_count(v: float) -> str:
    return f"{round(v):,}"


def fmt_bytes(v: float) -> str:
    if v < 1024:
        return f"{v:.0f} B"
    if v < 1024**2:
        return f"{v / 1024:.1f} KiB"
    return f"{v / 1024**2:.2f} MiB"


def fmt_ratio(v: float) -> str:
    return f"{v:.1f}×"


def fmt_ips(v: float) -> str:
    return f"{v:,.0f}"
