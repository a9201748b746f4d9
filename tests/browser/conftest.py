"""A real browser for the pages people meet: Playwright for Python driving Debian's Chromium
(`apt-get install chromium`; no browser download). Screenshots go to BROWSER_ARTIFACTS_DIR
(default test-artifacts/screenshots), one file per `shot(page, name)` call."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS_DIR", "test-artifacts/screenshots"))


@pytest.fixture(scope="session")
def chromium() -> Iterator:
    """One headless Chromium for the session; each test opens its own contexts."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (make test does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        yield browser
        browser.close()


@pytest.fixture
def new_context(chromium) -> Iterator[Callable[..., object]]:
    """Factory of fresh browser contexts (separate cookie jars: one per 'browser' of a user)."""
    contexts = []

    def factory(**options):
        context = chromium.new_context(**options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield factory
    for context in contexts:
        context.close()


@pytest.fixture
def shot(request) -> Callable[[object, str], Path]:
    """shot(page, "name") writes test-artifacts/screenshots/<test>-<name>.png and returns it."""
    test = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)

    def take(page, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{test}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
