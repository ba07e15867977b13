"""Open a report in headless Chromium: a screenshot and what a reader would see go wrong.

Chromium (Debian package ``chromium``) is driven through its DevTools protocol over a
pipe (``--remote-debugging-pipe``): no server, no port, no Python dependency. The check
loads the page, collects console errors, uncaught exceptions and failed loads, and
reports for every ``<img>`` whether it decoded (natural width > 0) and is displayed
(a non-empty box, not hidden), and whether the page needs a horizontal scroll bar (a
table or figure wider than the window).

Example:
    >>> check = check_page("demo/index.html", screenshot="index.png")  # doctest: +SKIP
    >>> check.errors, check.hidden_images, check.page_overflows  # doctest: +SKIP
    ([], [], False)

From a shell: ``python -m lesionkit.report.browser REPORT.html SCREENSHOT.png``.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BrowserError", "PageCheck", "check_page", "find_chromium"]

#: Executables tried in order, the Debian package's first.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

_IMAGES_JS = """JSON.stringify({
  images: Array.from(document.images).map(function (img) {
    var box = img.getBoundingClientRect(), style = getComputedStyle(img);
    return {alt: img.alt, naturalWidth: img.naturalWidth, width: box.width,
            height: box.height, complete: img.complete,
            shown: box.width > 0 && box.height > 0 && style.display !== 'none'
                   && style.visibility !== 'hidden' && style.opacity !== '0'};
  }),
  scrollWidth: document.documentElement.scrollWidth,
  innerWidth: window.innerWidth,
  height: document.documentElement.scrollHeight
})"""


class BrowserError(RuntimeError):
    """Chromium could not be started, or did not answer in time."""


@dataclass
class PageCheck:
    """What loading one page showed.

    Attributes:
        url: The page loaded.
        errors: Console errors, uncaught exceptions and failed loads, one line each.
        images: One dict per ``<img>``: alt, naturalWidth, width, height (CSS px), shown.
        scroll_width: Width of the page's content (CSS px).
        window_width: Width of the window (CSS px).
        height: Height of the whole page (CSS px).
        ready: The value of the ``ready`` expression when the page was checked (None
            when none was given, "" when it stayed empty until the timeout).
    """

    url: str
    errors: list[str] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    scroll_width: int = 0
    window_width: int = 0
    height: int = 0
    ready: str | None = None

    @property
    def hidden_images(self) -> list[str]:
        """Alt texts of images that did not decode or are not displayed."""
        return [i["alt"] for i in self.images if not (i["naturalWidth"] > 0 and i["shown"])]

    @property
    def page_overflows(self) -> bool:
        """True when the page scrolls sideways (something wider than the window)."""
        return self.scroll_width > self.window_width


def find_chromium() -> str | None:
    """Path of a Chromium executable on ``PATH``, or None."""
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


class _DevTools:
    """The DevTools protocol over Chromium's pipe: NUL-terminated JSON messages."""

    def __init__(self, executable: str, profile: str, timeout: float) -> None:
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()
        # Chromium reads commands on fd 3 and writes answers on fd 4. Copies above 10
        # first, so that dup2 never lands on one of the pipes' own numbers.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser, from_browser)]

        def child_fds() -> None:
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        flags = ["--headless", "--remote-debugging-pipe", "--disable-gpu", "--no-first-run",
                 "--no-default-browser-check", "--hide-scrollbars", "--mute-audio",
                 "--disable-dev-shm-usage", "--disable-extensions", f"--user-data-dir={profile}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            flags.append("--no-sandbox")  # Chromium refuses to sandbox as root
        try:
            self.process = subprocess.Popen(
                [executable, *flags, "about:blank"], stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=False,
                preexec_fn=child_fds)
        finally:
            for fd in (to_browser, from_browser, *high):
                os.close(fd)
        self.timeout, self._buffer, self._next_id = timeout, b"", 0
        self.events: list[dict] = []

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise BrowserError(f"Chromium did not answer within {self.timeout:g} s")
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise BrowserError("Chromium closed its DevTools pipe (it crashed or exited)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: str | None = None, **params: Any) -> dict:
        """Send one command and return its result; events met meanwhile are kept."""
        self._next_id += 1
        command = {"id": self._next_id, "method": method, "params": params}
        if session:
            command["sessionId"] = session
        os.write(self._write, json.dumps(command).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str) -> dict:
        """The first event called ``method`` (already received or coming)."""
        deadline = time.monotonic() + self.timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(self._message(deadline))

    def close(self) -> None:
        with contextlib.suppress(BrowserError, OSError):
            self.call("Browser.close")
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._read, self._write):
            os.close(fd)


def _problems(events: list[dict]) -> list[str]:
    """Console errors, uncaught exceptions and failed loads, one line each."""
    lines = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in
                            params.get("args", []))
            lines.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            lines.append(f"uncaught exception: {text}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            lines.append(f"{entry.get('source', 'log')}: {entry.get('text')} {entry.get('url', '')}"
                         .rstrip())
    return lines


def check_page(
    page: str | os.PathLike[str],
    screenshot: str | os.PathLike[str] | None = None,
    width: int = 1280,
    height: int = 900,
    full_page: bool = False,
    timeout: float = 30.0,
    executable: str | None = None,
    ready: str | None = None,
) -> PageCheck:
    """Load an HTML file in headless Chromium; optionally save a PNG screenshot.

    Args:
        page: HTML file (or a ``file://`` / ``http://`` URL).
        screenshot: PNG to write; parent folders are created.
        width, height: Window size in CSS pixels.
        full_page: Screenshot the whole page rather than the window.
        timeout: Seconds allowed for each step (start, load, each command).
        executable: Chromium to run (default: :func:`find_chromium`).
        ready: A JavaScript expression that a page which draws after loading (a viewer)
            sets when it is done, e.g. ``"window.lesionkitViewer"``: polled until it is
            not empty (at most ``timeout`` seconds) before the page is checked.

    Returns:
        The console errors, the state of every image, the page's width and the value
        of ``ready``.

    Raises:
        BrowserError: No Chromium, or it did not start or answer.
    """
    executable = executable or find_chromium()
    if executable is None:
        raise BrowserError(f"expected a Chromium executable ({', '.join(CHROMIUM_NAMES)}) on "
                           "PATH, found none (Debian: apt-get install chromium)")
    text = os.fspath(page)
    url = text if "://" in text else Path(text).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="lesionkit-chromium-") as profile:
        browser = _DevTools(executable, profile, timeout)
        try:
            targets = browser.call("Target.getTargets")["targetInfos"]
            target = next((t["targetId"] for t in targets if t["type"] == "page"), None)
            if target is None:
                target = browser.call("Target.createTarget", url="about:blank")["targetId"]
            session = browser.call("Target.attachToTarget", targetId=target,
                                   flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                browser.call(f"{domain}.enable", session)
            browser.call("Emulation.setDeviceMetricsOverride", session, width=width,
                         height=height, deviceScaleFactor=1, mobile=False)
            browser.events.clear()
            navigation = browser.call("Page.navigate", session, url=url)
            if navigation.get("errorText"):
                raise BrowserError(f"{url}: {navigation['errorText']}")
            browser.wait_for("Page.loadEventFired")
            value = None if ready is None else _poll(browser, session, ready, timeout)
            state = json.loads(browser.call("Runtime.evaluate", session, expression=_IMAGES_JS,
                                            returnByValue=True)["result"]["value"])
            if screenshot is not None:
                options: dict[str, Any] = {"format": "png"}
                if full_page:
                    options.update(captureBeyondViewport=True, clip={
                        "x": 0, "y": 0, "width": width, "height": state["height"], "scale": 1})
                png = base64.b64decode(browser.call("Page.captureScreenshot", session,
                                                    **options)["data"])
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                Path(screenshot).write_bytes(png)
            # Events that arrived while answering the last commands count too.
            browser.call("Runtime.evaluate", session, expression="0")
        finally:
            browser.close()
    return PageCheck(url=url, errors=_problems(browser.events), images=state["images"],
                     scroll_width=int(state["scrollWidth"]),
                     window_width=int(state["innerWidth"]), height=int(state["height"]),
                     ready=value)


def _poll(browser: _DevTools, session: str, expression: str, timeout: float) -> str:
    """The expression's value as text once it is not empty, or "" after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = browser.call("Runtime.evaluate", session, returnByValue=True,
                              expression=f"String(({expression}) || '')")["result"]
        value = str(result.get("value", ""))
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    """``python -m lesionkit.report.browser PAGE.html [SHOT.png] [WIDTH HEIGHT]``."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(main.__doc__)
        return 0 if args else 2
    size = [int(a) for a in args[2:4]] or [1280, 900]
    check = check_page(args[0], args[1] if len(args) > 1 else None, *size)
    for line in check.errors:
        print(f"error: {line}")
    for alt in check.hidden_images:
        print(f"image not displayed: {alt}")
    if check.page_overflows:
        print(f"page wider than the window: {check.scroll_width} > {check.window_width} px")
    print(f"{check.url}: {len(check.images)} images, {len(check.errors)} errors")
    return 1 if check.errors or check.hidden_images else 0


if __name__ == "__main__":
    raise SystemExit(main())
