"""Pages of the MLflow UI as a new user's browser renders them: headless Chromium (Debian's
package) driven over the DevTools protocol on a pipe (stdlib only), the page's visible text,
and a PNG screenshot of the same page.

A page is read once it shows what the caller waits for (and its text has stopped changing),
never after a fixed budget: MLflow's single-page app keeps requests open and polls, so
``--virtual-time-budget`` (which only advances while no request is pending) could wait forever.
Every step has a wall-clock deadline; on expiry Chromium's process group is killed and the error
says which URL, what was awaited and what the page showed.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xnorlab.io import write_atomic
from xnorlab.tracking import project_root

# No network beyond the page, no first-run or sync machinery, a fresh profile per browser.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--disable-extensions", "--remote-debugging-pipe"]
# The page's visible text, with images as "[img <alt>]" (a plot opened as a picture).
TEXT_JS = ("document.body ? document.body.innerText + ' ' + Array.from(document.images)"
           ".map(i => '[img ' + i.alt + ']').join(' ') : ''")

# Click the first element whose text is t: links first, then buttons, then other controls (the
# label of a segmented switch); false if there is none.
CLICK_JS = ("t => { for (const sel of ['a', 'button', 'label', '[role]']) {"
            " const el = Array.from(document.querySelectorAll(sel))"
            ".find(e => e.innerText.trim() === t); if (el) { el.click(); return true; } }"
            " return false; }")


class BrowserError(RuntimeError):
    """Chromium failed, or a page did not show what was awaited in time."""


def chromium() -> str:
    """The chromium binary, installed by scripts/chromium.sh where missing."""
    found = shutil.which("chromium")
    if found:
        return found
    proc = subprocess.run(["bash", str(project_root() / "scripts" / "chromium.sh")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise BrowserError(f"installing chromium failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout.strip().splitlines()[-1]


class Browser:
    """One headless Chromium (own process group, fresh profile) and one page in it."""

    def __init__(self, size: tuple[int, int] = (1600, 900), start_timeout: float = 60):
        self._tmp = tempfile.TemporaryDirectory(prefix="xnorlab-chromium-")
        to_child, self._wfd = os.pipe()    # our commands -> chromium's fd 3
        self._rfd, from_child = os.pipe()  # chromium's fd 4 -> its replies and events

        def wire_fds() -> None:  # in the child: the protocol pipe lives on fds 3 and 4
            # (moved above 10 first, so neither end is overwritten by the other's dup2)
            high_in = fcntl.fcntl(to_child, fcntl.F_DUPFD, 10)
            high_out = fcntl.fcntl(from_child, fcntl.F_DUPFD, 10)
            os.dup2(high_in, 3)    # dup2 targets are inheritable; the rest close on exec
            os.dup2(high_out, 4)

        self._log = open(Path(self._tmp.name) / "chromium.log", "wb")
        self.proc = subprocess.Popen(
            [chromium(), *FLAGS, f"--user-data-dir={self._tmp.name}/profile",
             f"--window-size={size[0]},{size[1]}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            close_fds=False, preexec_fn=wire_fds, start_new_session=True)
        os.close(to_child)
        os.close(from_child)
        self._buf = b""
        self._next_id = 0
        self.size = size
        try:
            deadline = time.monotonic() + start_timeout
            page = next((t for t in self._call("Target.getTargets", deadline=deadline)
                         ["targetInfos"] if t["type"] == "page"), None)
            target = page["targetId"] if page else self._call(
                "Target.createTarget", {"url": "about:blank"}, deadline=deadline)["targetId"]
            self._session = self._call("Target.attachToTarget",
                                       {"targetId": target, "flatten": True},
                                       deadline=deadline)["sessionId"]
            self._call("Emulation.setDeviceMetricsOverride", {
                "width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False},
                deadline=deadline, session=True)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Ask Chromium to quit (it reaps its renderers), then kill whatever is left of its
        process group, and drop the profile."""
        if self.proc.poll() is None:
            try:
                self._call("Browser.close", deadline=time.monotonic() + 5)
            except (BrowserError, TimeoutError, OSError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers of the group, if any
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        for fd in (self._wfd, self._rfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        self._tmp.cleanup()

    def _log_tail(self) -> str:
        self._log.flush()
        text = (Path(self._tmp.name) / "chromium.log").read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if "dbus" not in ln]  # no bus: noise only
        return "\n".join(lines[-8:])

    def _call(self, method: str, params: dict[str, Any] | None = None, *, deadline: float,
              session: bool = False) -> dict[str, Any]:
        """Send one DevTools command and wait, until `deadline`, for its reply."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self._session
        os.write(self._wfd, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._next_id:
                    if "error" in reply:
                        raise BrowserError(f"chromium: {method} failed: {reply['error']}")
                    return reply["result"]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(method)
            ready, _, _ = select.select([self._rfd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self._rfd, 1 << 20)
                if not chunk:
                    raise BrowserError(f"chromium exited during {method} "
                                       f"(code {self.proc.poll()}):\n{self._log_tail()}")
                self._buf += chunk

    def text(self, deadline: float) -> str:
        """The page's visible text now, whitespace-normalised."""
        result = self._call("Runtime.evaluate", {"expression": TEXT_JS, "returnByValue": True},
                            deadline=deadline, session=True)["result"]
        return " ".join(str(result.get("value", "")).split())

    def open(self, url: str, expect: Sequence[str], png: Path | None = None,
             timeout: float = 60) -> str:
        """Load `url` afresh, as a pasted link, then :meth:`wait` for `expect`; the page's
        text. (Via about:blank: a URL that differs only in its #fragment would otherwise be a
        same-page navigation, which MLflow's artifact view does not follow.)"""
        for target in ("about:blank", url):
            self._call("Page.navigate", {"url": target}, deadline=time.monotonic() + timeout,
                       session=True)
        return self.wait(expect, png, timeout, what=url)

    def evaluate(self, js: str, timeout: float = 30) -> Any:
        """The value of a JavaScript expression in the page."""
        return self._call("Runtime.evaluate", {"expression": js, "returnByValue": True},
                          deadline=time.monotonic() + timeout,
                          session=True)["result"].get("value")

    def click(self, link_text: str, expect: Sequence[str], png: Path | None = None,
              timeout: float = 60) -> str:
        """Click the first link or button whose text is `link_text`, as a user would, then
        :meth:`wait` for `expect`; the page's text."""
        js = f"({CLICK_JS})({json.dumps(link_text)})"
        found = self._call("Runtime.evaluate", {"expression": js, "returnByValue": True},
                           deadline=time.monotonic() + timeout, session=True)["result"]
        if not found.get("value"):
            raise BrowserError(f"chromium: no link {link_text!r} to click; the page showed: "
                               f"{self.text(time.monotonic() + timeout)[:600]!r}")
        return self.wait(expect, png, timeout, what=f"a click on {link_text!r}")

    def wait(self, expect: Sequence[str], png: Path | None = None, timeout: float = 60,
             settle: float = 1.5, what: str = "the page") -> str:
        """Wait until the page's text contains every string of `expect` and has not changed
        for `settle` seconds, save a screenshot to `png`, return the text."""
        deadline = time.monotonic() + timeout
        text, since, last = "", time.monotonic(), None
        try:
            while True:
                text = self.text(deadline)
                now = time.monotonic()
                if text != last:
                    last, since = text, now
                elif text and all(e in text for e in expect) and now - since >= settle:
                    break
                if now >= deadline:
                    raise TimeoutError
                time.sleep(0.25)
            if png:
                shot = self._call("Page.captureScreenshot", {"format": "png"},
                                  deadline=deadline, session=True)["data"]
                write_atomic(png, base64.b64decode(shot))
        except TimeoutError:
            missing = [e for e in expect if e not in text]
            raise BrowserError(
                f"chromium: {what} did not show {missing or 'a settled page'} within "
                f"{timeout:.0f} s; it showed: {text[:600]!r}") from None
        return text


def render(url: str, expect: Sequence[str], png: Path | None = None,
           size: tuple[int, int] = (1600, 900), timeout: float = 60) -> str:
    """One page in a fresh headless Chromium: :meth:`Browser.open`, then Chromium stopped."""
    with Browser(size) as browser:
        return browser.open(url, expect, png, timeout)
