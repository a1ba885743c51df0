"""A real headless Chromium (Debian's) driven by Playwright, shared by the browser tests.

Skipped when no Chromium exists, unless ``REQUIRE_BROWSER=1`` (CI), where that is a failure.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

# The flags keep a root, sandbox-less, network-less Chromium quiet and fast (the machine's own notes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


# Module scope, not session: while Playwright's sync API is open its asyncio loop counts as running in
# this thread, and other tests' plain `asyncio.run(...)` helpers would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_path()
    if executable is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("REQUIRE_BROWSER=1 but no chromium found (apt-get install chromium)")
        pytest.skip("no chromium (apt-get install chromium)")
    # trio-asyncio (imported by the shared conftest) installs its own asyncio policy; Playwright's sync API
    # needs a plain asyncio loop of its own, created while the default policy is in force.
    policy = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        manager = sync_api.sync_playwright()
        playwright = manager.__enter__()
    finally:
        asyncio.set_event_loop_policy(policy)
    try:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
    finally:
        manager.__exit__(None, None, None)


def decode_qr(png: bytes) -> str:
    """The text of the one QR code in a screenshot, read by ZXing (a reader independent of the page's encoder)."""
    zxingcpp = pytest.importorskip("zxingcpp")
    from PIL import Image

    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)).convert("L"))
    assert found, "no QR code found in the screenshot"
    return str(found[0].text)
