"""``sluice serve`` in a real browser: Debian's headless Chromium, driven by Playwright.

The test starts ``sluice serve`` on 127.0.0.1, opens the page, clicks textual-serve's start
button, and reads what the console sends to the browser's terminal (the websocket frames): the
estate tree renders, a key press reaches the app (``m`` opens the matrix, ``n`` ``s`` start a
rollout that history records), and a second browser session only watches. It saves
screenshots (``tmp_path``/served*.png). CI must run it; without chromium or playwright a
developer gets a skip with the reason.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-B]|\x1b[=>]")

pytestmark = pytest.mark.timeout(240)


def _need(what: str, ok: bool) -> None:
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"{what} is missing (CI must run the browser test)")
        pytest.skip(f"{what} is missing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    estate = tmp_path / "sample_estate.toml"
    shutil.copy(ROOT / "sample_estate.toml", estate)
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sluice.cli", "serve", str(estate), "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    try:
        _wait(lambda: _listening(port) or proc.poll() is not None, "sluice serve to listen")
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        yield f"http://127.0.0.1:{port}", estate
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own group: the console processes too
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()


class Session:
    """One browser page on the served console; ``text`` is what the terminal was sent."""

    def __init__(self, page: Any):
        self.page = page
        self.frames: list[str] = []
        page.on("websocket", self._socket)

    def _socket(self, ws: Any) -> None:
        def received(payload: Any) -> None:
            data = payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
            self.frames.append(data)

        ws.on("framereceived", received)

    def text(self, since: int = 0) -> str:
        return ANSI.sub("", "".join(self.frames[since:]))

    def mark(self) -> int:
        """Where the frames stand now: ``wait_for(..., since=mark)`` looks only after it."""
        return len(self.frames)

    def wait_for(self, needle: str, timeout: float = 60, since: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text(since):
            if time.monotonic() > deadline:
                tail = self.text(since)[-2000:]
                raise AssertionError(f"the browser never showed {needle!r}; it ended: {tail!r}")
            self.page.wait_for_timeout(100)

    def open(self, url: str) -> None:
        self.page.goto(url)
        # textual-serve's page may show a start button first (it does when asked to delay).
        if self.page.is_visible("#start"):
            self.page.click("#start")
        self.page.wait_for_selector("#terminal canvas, #terminal .xterm-screen", timeout=30_000)
        self.page.click("#terminal")  # keys go to the terminal


def test_console_served_to_a_real_browser(served: tuple[str, Path], tmp_path: Path) -> None:
    _need(CHROMIUM, Path(CHROMIUM).exists())
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need("playwright (the dev extra)", False)
    url, estate = served
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh user-data-dir
            executable_path=CHROMIUM,
            args=ARGS,
            headless=True,
            viewport={"width": 1280, "height": 860},
        )
        try:
            driver = Session(browser.new_page())
            driver.open(url)
            driver.wait_for("eph-101")  # the estate tree rendered
            driver.wait_for("estate · postgres-operator")
            driver.page.screenshot(path=str(tmp_path / "served.png"))

            driver.page.keyboard.press("m")  # a key press reaches the app
            driver.wait_for("estate matrix · acme-platform")
            back = driver.mark()
            driver.page.keyboard.press("Escape")  # (a key right after it would read as alt+key)
            driver.wait_for("press n to start one", since=back)
            driver.page.keyboard.press("n")
            driver.wait_for("New rollout")
            driver.page.keyboard.press("s")
            _wait(lambda: _rollouts(estate) > 0, "history to record the browser's rollout")
            driver.page.screenshot(path=str(tmp_path / "served-rollout.png"))

            watcher = Session(browser.new_page())  # a second session: not the driver
            watcher.open(url)
            watcher.wait_for("this console only watches")
            watcher.page.screenshot(path=str(tmp_path / "served-watcher.png"))
        finally:
            browser.close()
    assert (tmp_path / "served.png").stat().st_size > 10_000


def _rollouts(estate: Path) -> int:
    db = estate.parent / ".sluice" / "history.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db, timeout=5) as conn:
        try:
            return int(conn.execute("SELECT COUNT(*) FROM rollouts").fetchone()[0])
        except sqlite3.OperationalError:
            return 0
