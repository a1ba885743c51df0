"""Fixtures of the connect page's browser tests: the scripted server and a page wired to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.web._scripted import ORIGIN, FakeServer


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def errors() -> list[str]:
    return []


@pytest.fixture
def page(browser: Any, server: FakeServer, errors: list[str]) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 375, "height": 800})
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text) if msg.type == "error" and "ERR_CONNECTION_REFUSED" not in msg.text else None
        ),
    )
    page.clock.install()
    page.route(f"{ORIGIN}/**", server.route)
    page.route_web_socket(f"{ORIGIN.replace('http', 'ws')}/marketplace/ws", server.websocket)
    yield page
    context.close()
    assert errors == [], errors  # CSP violations and script errors show up here


@pytest.fixture
def live_page(browser: Any, server: FakeServer, errors: list[str]) -> Iterator[Any]:
    """Like ``page``, on the real clock: axe-core waits on timers of its own."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.route(f"{ORIGIN}/**", server.route)
    page.route_web_socket(f"{ORIGIN.replace('http', 'ws')}/marketplace/ws", server.websocket)
    yield page
    context.close()
    assert errors == [], errors
