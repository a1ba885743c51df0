"""Fixtures of the connect page's browser tests: the scripted server and a page wired to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.web._scripted import ORIGIN, FakeServer


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def errors() -> list[str]:
    return []


def _wired(browser: Any, server: FakeServer, errors: list[str], **context: Any) -> tuple[Any, Any]:
    """A new browser context and page whose traffic the scripted server answers; errors are collected."""
    opened = browser.new_context(**context)
    page = opened.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.route(f"{ORIGIN}/**", server.route)
    page.route_web_socket(f"{ORIGIN.replace('http', 'ws')}/marketplace/ws", server.websocket)
    return opened, page


@pytest.fixture
def page(browser: Any, server: FakeServer, errors: list[str]) -> Iterator[Any]:
    context, page = _wired(browser, server, errors, viewport={"width": 375, "height": 800})
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text) if msg.type == "error" and "ERR_CONNECTION_REFUSED" not in msg.text else None
        ),
    )
    page.clock.install()
    yield page
    context.close()
    assert errors == [], errors  # CSP violations and script errors show up here


@pytest.fixture
def live_page(browser: Any, server: FakeServer, errors: list[str]) -> Iterator[Any]:
    """Like ``page``, on the real clock: axe-core waits on timers of its own."""
    context, page = _wired(browser, server, errors, viewport={"width": 1280, "height": 800})
    yield page
    context.close()
    assert errors == [], errors


@pytest.fixture
def screen_page(browser: Any, server: FakeServer, errors: list[str]) -> Iterator[Callable[..., Any]]:
    """Opens pages on a screen of one's choosing (``viewport``, ``device_scale_factor`` …), on the real clock."""
    contexts: list[Any] = []

    def open_on(**context: Any) -> Any:
        opened, page = _wired(browser, server, errors, **context)
        contexts.append(opened)
        return page

    yield open_on
    for opened in contexts:
        opened.close()
    assert errors == [], errors
