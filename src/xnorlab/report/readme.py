"""Keep the README's results table current: rewrite only what lies between the markers."""

from __future__ import annotations

from pathlib import Path

from xnorlab.io import write_atomic

START = "<!-- results:start -->"
END = "<!-- results:end -->"


class MarkersError(ValueError):
    """The README lacks the results markers (or has them out of order)."""


def replace_between_markers(text: str, content: str) -> str:
    """`text` with everything between START and END replaced by `content` (markers kept)."""
    start = text.find(START)
    end = text.find(END, start + len(START)) if start >= 0 else -1
    if start < 0 or end < 0 or text.count(START) != 1 or text.count(END) != 1:
        raise MarkersError(
            f"expected exactly one {START!r} followed by one {END!r}; add them where the "
            "results table should go"
        )
    return text[: start + len(START)] + "\n" + content.strip("\n") + "\n" + text[end:]


def update_readme(path: Path, content: str) -> bool:
    """Rewrite `path` between the markers; True if the file changed."""
    text = path.read_text(encoding="utf-8")
    new = replace_between_markers(text, content).encode("utf-8")
    return write_atomic(path, new, skip_unchanged=True)
