"""Pages of the MLflow UI as a new user's browser renders them: headless Chromium (Debian's
package), rendered DOM as text, and a PNG screenshot of the same page."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from xnorlab.io import write_atomic
from xnorlab.tracking import project_root

# No network beyond the page, no first-run or sync machinery, a fresh profile per call.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def chromium() -> str:
    """The chromium binary, installed by scripts/chromium.sh where missing."""
    found = shutil.which("chromium")
    if found:
        return found
    out = subprocess.run(["bash", str(project_root() / "scripts" / "chromium.sh")],
                         capture_output=True, text=True, check=True).stdout.strip()
    return out.splitlines()[-1]


def render(url: str, png: Path | None = None, budget_ms: int = 12000,
           size: tuple[int, int] = (1600, 900), timeout: float = 180) -> str:
    """Load `url` in a fresh headless Chromium, let the JS app run for `budget_ms` of virtual
    time, and return the rendered DOM as whitespace-normalised visible text (images as
    ``[img <alt>]``); with `png`, also save a screenshot of the same page there."""
    with tempfile.TemporaryDirectory(prefix="xnorlab-chromium-") as tmp:
        shot = Path(tmp) / "shot.png"
        cmd = [chromium(), *FLAGS, f"--user-data-dir={tmp}/profile",
               f"--virtual-time-budget={budget_ms}", f"--window-size={size[0]},{size[1]}",
               "--dump-dom", *([f"--screenshot={shot}"] if png else []), url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not proc.stdout:
            raise RuntimeError(f"chromium on {url} failed: {proc.stderr[-1500:]}")
        if png:
            if not shot.exists():
                raise RuntimeError(f"chromium wrote no screenshot of {url}")
            write_atomic(png, shot.read_bytes())
    doc = re.sub(r"<(script|style)\b.*?</\1>", " ", proc.stdout, flags=re.S)
    doc = re.sub(r"<img\b[^>]*\balt=\"([^\"]*)\"[^>]*>", r" [img \1] ", doc)
    text = re.sub(r"<[^>]+>", " ", doc)
    return re.sub(r"\s+", " ", html.unescape(text)).strip()
