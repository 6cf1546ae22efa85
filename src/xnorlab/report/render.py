"""Renderings of a :class:`~xnorlab.report.cells.Table`: GitHub Markdown, LaTeX (booktabs), CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

from xnorlab.report.cells import DASH, Cell, Table


def _marks(notes: list[int]) -> str:
    return ",".join(str(n) for n in notes)


def _display_rows(table: Table) -> list[list[Cell]]:
    """Rows with repeated leading group labels blanked."""
    out, prev = [], None
    for row in table.rows:
        shown = list(row)
        if prev is not None:
            for c in range(table.group_cols):
                if all(row[i].text == prev[i].text for i in range(c + 1)):
                    shown[c] = Cell()
        out.append(shown)
        prev = row
    return out


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(table: Table, run_ids: bool = True, heading: str | None = "##",
                    extra: bool = True) -> str:
    """The table as GitHub Markdown: heading, caption, table, numbered notes (and, with
    `extra`, the table's extra paragraph)."""
    def cell(c: Cell) -> str:
        text = _md_escape(c.text)
        if run_ids and table.cell_ids and c.run_id and c.text and c.text != DASH:
            text += f" `{c.run_id[:8]}`"
        if c.notes:
            text += f" [{_marks(c.notes)}]"
        return text

    lines = ([f"{heading} {table.title}", ""] if heading else []) + [table.caption, ""]
    lines.append("| " + " | ".join(_md_escape(c.title) for c in table.columns) + " |")
    lines.append("| " + " | ".join(":--" if c.align == "l" else "--:"
                                   for c in table.columns) + " |")
    for row in _display_rows(table):
        lines.append("| " + " | ".join(cell(c) for c in row) + " |")
    if table.notes.texts:
        lines.append("")
        lines += [f"- [{i}] {text}" for i, text in enumerate(table.notes.texts, 1)]
    if extra and table.extra_md:
        lines += ["", table.extra_md]
    return "\n".join(lines) + "\n"


_LATEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "—": "---", "×": r"$\times$", "→": r"$\rightarrow$", "−": "$-$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials; `code` spans become \\texttt{...}."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: treat it literally
        parts = [text.replace("`", "'")]
    out = []
    for i, part in enumerate(parts):
        escaped = "".join(_LATEX.get(ch, ch) for ch in part)
        out.append(f"\\texttt{{{escaped}}}" if i % 2 else escaped)
    return "".join(out)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def render_latex(table: Table) -> str:
    """A booktabs `table` environment (needs \\usepackage{booktabs})."""
    keep = [i for i, c in enumerate(table.columns) if c.latex]

    def cell(c: Cell) -> str:
        text = latex_escape(c.text)
        return text + (f"\\textsuperscript{{{_marks(c.notes)}}}" if c.notes else "")

    spec = "".join(table.columns[i].align for i in keep)
    lines = [
        "\\begin{table}[htbp]",
        "  \\centering",
        "  \\small",
        f"  \\caption[{latex_escape(_sentence(table.title.split(': ', 1)[-1]))}]"
        f"{{{latex_escape(table.caption)}}}",
        f"  \\label{{tab:xnorlab-{table.name}}}",
        # shrink to the line width only when wider (needs graphicx)
        "  \\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%",
        f"  \\begin{{tabular}}{{{spec}}}",
        "    \\toprule",
        "    " + " & ".join(latex_escape(table.columns[i].title) for i in keep) + " \\\\",
        "    \\midrule",
    ]
    prev = None
    for row, shown in zip(table.rows, _display_rows(table), strict=True):
        if prev is not None and row[0].text != prev[0].text:
            lines.append("    \\midrule")
        lines.append("    " + " & ".join(cell(shown[i]) for i in keep) + " \\\\")
        prev = row
    lines += ["    \\bottomrule", "  \\end{tabular}}"]
    if table.notes.texts:
        lines += ["  \\par\\smallskip", "  {\\footnotesize"]
        lines += [f"  \\textsuperscript{{{i}}}\\,{latex_escape(text)}\\par"
                  for i, text in enumerate(table.notes.texts, 1)]
        lines.append("  }")
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, float) else str(v)


def render_csv(table: Table) -> str:
    """Tidy CSV: one row per run, raw values (empty = missing), the MLflow run id in `run_id`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.fields)
    for rec in table.records:
        writer.writerow([_csv_value(rec.get(f)) for f in table.fields])
    return buf.getvalue()
