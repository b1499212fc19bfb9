"""A real browser for the tests: render a page in headless Chromium, save a PNG, report console errors.

Chromium is driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``: JSON messages
separated by NUL bytes on file descriptors 3 and 4), so no websocket library and no open port are needed.
Everything the page reports as an error is collected: ``console.error`` calls, uncaught exceptions, and the
browser's own log entries of level error (a resource that failed to load, a blocked request).

    from tests.browser import screenshot
    page = screenshot("site/index.html", "home.png")    # a PageReport
    assert not page.errors, page.errors

``evaluate`` runs JavaScript expressions after the load and returns their values, ``wait_for`` polls one until
it is true (map tiles, images that arrive late), ``ignore`` leaves out errors that a test expects (a tile server
that cannot be reached offline). Chromium comes from Debian (``scripts/install.sh test``); ``GEOPROC_CHROMIUM``
names another binary.
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PageReport", "BrowserUnavailable", "chromium_path", "screenshot"]


class BrowserUnavailable(RuntimeError):
    """No Chromium here (install it with ``bash scripts/install.sh test``)."""


@dataclass
class PageReport:
    """What a page did while it loaded."""

    url: str
    png: Path
    #: console errors, uncaught exceptions and failed loads, one line each
    errors: list[str] = field(default_factory=list)
    #: every console message and log entry, ``"level: text"``
    messages: list[str] = field(default_factory=list)
    #: the values of the ``evaluate`` expressions, by name
    values: dict[str, object] = field(default_factory=dict)


def chromium_path() -> str:
    """The Chromium binary: ``$GEOPROC_CHROMIUM``, Debian's (skipping its launcher script), or one on PATH."""
    for candidate in (os.environ.get("GEOPROC_CHROMIUM"), "/usr/lib/chromium/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BrowserUnavailable("chromium not found; install it with `bash scripts/install.sh test` (Debian package "
                             "chromium) or point GEOPROC_CHROMIUM at a Chromium binary")


def _as_url(page: str | os.PathLike) -> str:
    text = os.fspath(page)
    if re.match(r"^[a-z][a-z0-9+.-]*://", text) or text.startswith(("about:", "data:")):
        return text
    path = Path(text).resolve()
    if not path.exists():
        raise FileNotFoundError(f"no page at {path}; build it first")
    return path.as_uri()


class _DevTools:
    """The DevTools protocol over the pipe of one Chromium process."""

    def __init__(self, to_browser: int, from_browser: int, process: subprocess.Popen):
        self.out, self.inp, self.process = to_browser, from_browser, process
        self.next_id, self.buffer, self.events = 0, b"", []

    def _read(self, timeout: float) -> dict | None:
        while b"\0" not in self.buffer:
            ready, _, _ = select.select([self.inp], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self.inp, 1 << 20)
            if not chunk:
                raise BrowserUnavailable(f"chromium exited (status {self.process.poll()}) while a page was loading")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            os.write(self.out, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise BrowserUnavailable(f"chromium exited (status {self.process.wait()}) before {method}") from None
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            reply = self._read(left)
            if reply is None:
                break
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self.events.append(reply)
        raise TimeoutError(f"chromium did not answer {method} within {timeout:.0f} s")

    def pump(self, seconds: float) -> None:
        """Collect the events that arrive within ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            event = self._read(left)
            if event is None:
                return
            self.events.append(event)

    def wait_event(self, name: str, timeout: float) -> bool:
        start = len(self.events)
        deadline = time.monotonic() + timeout
        while True:
            if any(e.get("method") == name for e in self.events[start:]):
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            event = self._read(left)
            if event is None:
                return False
            self.events.append(event)


def _remote_text(obj: dict) -> str:
    if "value" in obj:
        return obj["value"] if isinstance(obj["value"], str) else json.dumps(obj["value"])
    return obj.get("description") or obj.get("type", "")


def _collect(events: list[dict], report: PageReport) -> None:
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(_remote_text(a) for a in params.get("args", []))
            level = params.get("type", "log")
            report.messages.append(f"{level}: {text}")
            if level in ("error", "assert"):
                report.errors.append(f"console.{level}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "exception")
            where = f" ({details['url']}:{details.get('lineNumber', 0) + 1})" if details.get("url") else ""
            report.messages.append(f"exception: {text}{where}")
            report.errors.append(f"uncaught {text}{where}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            text = entry.get("text", "") + (f" {entry['url']}" if entry.get("url") else "")
            report.messages.append(f"{entry.get('level', 'info')}: {text}")
            if entry.get("level") == "error":
                report.errors.append(f"{entry.get('source', 'browser')}: {text}")


def screenshot(page: str | os.PathLike, png_path: str | os.PathLike, *, width: int = 1280, height: int = 900,
               full_page: bool = False, evaluate: dict[str, str] | None = None, wait_for: str | None = None,
               scroll_to: str | None = None,
               timeout: float = 30.0, settle: float = 0.5, ignore: tuple[str, ...] = ()) -> PageReport:
    """Load ``page`` (an HTML file or a URL) in headless Chromium and save it as a PNG.

    Parameters
    ----------
    page : str or path
        A local HTML file or a ``file://``/``http://`` URL.
    png_path : str or path
        Where the PNG goes (its folder is created).
    width, height : int
        The window in CSS pixels (device scale 1).
    full_page : bool
        Capture the whole page, not just the window.
    evaluate : dict of str to str, optional
        JavaScript expressions run after the load (and after ``wait_for``); their JSON values land in
        ``values`` under the same names.
    wait_for : str, optional
        A JavaScript expression polled until it is truthy (``timeout`` at most) before the capture.
    scroll_to : str, optional
        A CSS selector: its first match is scrolled to the middle of the window (clear of fixed headers)
        before the capture.
    timeout : float
        Seconds for the load event and for ``wait_for``.
    settle : float
        Seconds to keep listening after the load, for late errors.
    ignore : tuple of str
        Regular expressions; errors that match one are left out of ``errors`` (still in ``messages``).

    Returns
    -------
    PageReport
        The errors, all messages and the evaluated values.
    """
    url = _as_url(page)
    png = Path(png_path)
    png.parent.mkdir(parents=True, exist_ok=True)
    binary = chromium_path()
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()
    with tempfile.TemporaryDirectory(prefix="geoproc-chromium-") as profile, \
            open(Path(profile) / "stderr.log", "wb") as log:
        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--mute-audio",
                "--allow-file-access-from-files", f"--user-data-dir={profile}", "--remote-debugging-pipe",
                f"--window-size={width},{height}"]
        # the protocol wants its pipe on fds 3 (commands in) and 4 (replies out): bash puts them there (dash
        # takes single-digit fds only)
        process = subprocess.Popen(
            ["/bin/bash", "-c", f'exec "$0" "$@" 3<&{to_browser_r} 4>&{from_browser_w}', *args],
            pass_fds=(to_browser_r, from_browser_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=log, start_new_session=True)
        os.close(to_browser_r)
        os.close(from_browser_w)
        cdp = _DevTools(to_browser_w, from_browser_r, process)
        report = PageReport(url=url, png=png)
        try:
            try:
                target = cdp.send("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
            except (BrowserUnavailable, TimeoutError) as exc:
                tail = (Path(profile) / "stderr.log").read_text(errors="replace")[-2000:]
                raise BrowserUnavailable(f"{exc}; chromium said: {tail.strip() or 'nothing'}") from None
            session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Page"):
                cdp.send(f"{domain}.enable", session=session)
            cdp.send("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
            cdp.events.clear()
            navigation = cdp.send("Page.navigate", {"url": url}, session=session, timeout=timeout)
            if navigation.get("errorText"):
                report.errors.append(f"navigation: {navigation['errorText']} {url}")
            elif not cdp.wait_event("Page.loadEventFired", timeout):
                report.errors.append(f"navigation: no load event within {timeout:.0f} s for {url}")

            def js(expression: str):
                result = cdp.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                       "awaitPromise": True}, session=session)
                if "exceptionDetails" in result:
                    raise RuntimeError(f"{expression!r} failed in the page: "
                                       f"{result['exceptionDetails'].get('exception', {}).get('description')}")
                return result["result"].get("value")

            if wait_for:
                deadline = time.monotonic() + timeout
                while not js(wait_for):
                    if time.monotonic() > deadline:
                        report.errors.append(f"wait_for: {wait_for!r} still false after {timeout:.0f} s")
                        break
                    cdp.pump(0.1)
            if scroll_to:
                if not js(f"(() => {{ const e = document.querySelector({json.dumps(scroll_to)}); "
                          "if (e) e.scrollIntoView({block: 'center'}); return !!e; })()"):
                    report.errors.append(f"scroll_to: nothing matches {scroll_to!r}")
            cdp.pump(settle)
            report.values = {name: js(expression) for name, expression in (evaluate or {}).items()}
            shot = {"format": "png"}
            if full_page:
                size = cdp.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
                shot.update(captureBeyondViewport=True,
                            clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
            png.write_bytes(base64.b64decode(cdp.send("Page.captureScreenshot", shot, session=session)["data"]))
            _collect(cdp.events, report)
            try:
                cdp.send("Browser.close", timeout=5)
            except (TimeoutError, BrowserUnavailable, OSError):
                pass
        finally:
            os.close(to_browser_w)
            os.close(from_browser_r)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # its own process group (start_new_session): the browser's alone
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    report.errors = [e for e in report.errors if not any(re.search(p, e) for p in ignore)]
    return report
