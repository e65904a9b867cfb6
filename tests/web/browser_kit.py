"""What every browser test needs: Debian's Chromium driven by Playwright, a real uvicorn server
on a free loopback port, pages that fail their test on any console error, and screenshots kept
when ONCEONLY_TEST_SCREENSHOTS names a folder."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 15_000


def require_chromium() -> None:
    """Call at import time of a browser test module: skip without Chromium, fail under CI."""
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is required when CI=true (apt-get install chromium)", pytrace=False)
        pytest.skip(f"{CHROMIUM} not installed", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: Any, name: str) -> Iterator[str]:
    """Run `app` in a background thread; yields its base URL once /healthz answers."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            pytest.fail("the test server did not answer /healthz within 20 s")
        time.sleep(0.1)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def launch() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def open_page(browser: Any, base: str, **context_options: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies); the test fails on any console error, which is how a
    Content-Security-Policy violation or a broken asset shows up."""
    context = browser.new_context(base_url=base, locale="zh-CN", **context_options)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []

    def on_console(msg: Any) -> None:
        if msg.type == "error" and "401" not in msg.text and "favicon" not in msg.text:
            errors.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"browser console errors: {errors}"


def shot(page: Any, name: str) -> None:
    folder = os.environ.get("ONCEONLY_TEST_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)
