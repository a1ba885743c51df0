"""The connect page with the keyboard only: the order Tab walks, a focus ring you can see, the copy button,
and focus that is not lost when the button just pressed goes away."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web._scripted import FakeServer, expect, open_page

pytestmark = pytest.mark.browser


def tab_walk(page: Any, steps: int) -> list[str]:
    """The test ids Tab visits from the top of the page, in order."""
    top_of_page(page)
    visited = []
    for _ in range(steps):
        page.keyboard.press("Tab")
        visited.append(page.evaluate("document.activeElement.getAttribute('data-testid') || document.activeElement.id"))
    return visited


def top_of_page(page: Any) -> None:
    """Put the keyboard's starting point at the top, as a fresh visit has it (blur() keeps the old one)."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.mouse.click(2, 2)


def focus_ring(page: Any) -> tuple[str, float]:
    return page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; })()"
    )


def test_tab_follows_the_reading_order_on_the_qr_screen(page: Any, server: FakeServer) -> None:
    open_page(page)
    expect(page.get_by_test_id("qr").locator("svg")).to_have_count(1)
    assert tab_walk(page, 2) == ["lang-toggle", "mode-toggle"]


def test_tab_follows_the_reading_order_on_the_phone_screen(page: Any, server: FakeServer) -> None:
    open_page(page)
    page.get_by_test_id("mode-toggle").click()
    assert tab_walk(page, 4) == ["lang-toggle", "pairing-input", "pairing-submit", "mode-toggle"]


def test_every_control_shows_a_visible_focus_ring(page: Any, server: FakeServer) -> None:
    open_page(page)
    page.get_by_test_id("mode-toggle").click()
    top_of_page(page)
    for _ in range(4):
        page.keyboard.press("Tab")
        style, width = focus_ring(page)
        assert style != "none" and width >= 2, page.evaluate("document.activeElement.outerHTML")


def test_a_pairing_code_is_asked_for_and_copied_with_the_keyboard_only(page: Any, server: FakeServer) -> None:
    server.answer_pairing()
    open_page(page)
    expect(page.get_by_test_id("qr").locator("svg")).to_have_count(1)
    assert tab_walk(page, 2)[-1] == "mode-toggle"
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("pairing-input")).to_be_focused()  # the field, not the top of the page
    page.keyboard.type("8 900 123-45-67")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("pairing-code")).to_have_text("ABCD-EFGH")
    order = tab_walk(page, 2)
    assert order == ["lang-toggle", "pairing-copy"], order
    style, width = focus_ring(page)
    assert style != "none" and width >= 2
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("pairing-copy")).to_have_text("Скопировано")
    # No async clipboard on this (insecure, like a locked-down iframe) origin: the page copied by selecting
    # the code, which also leaves it selected for a manual copy.
    assert page.evaluate("window.getSelection().toString()") == "ABCD-EFGH"
    expect(page.get_by_test_id("pairing-copy")).to_be_focused()


def test_focus_moves_to_the_news_when_the_pressed_button_goes_away(page: Any, server: FakeServer) -> None:
    def script(ws: Any, frame: dict[str, Any]) -> None:
        if frame["type"] == "auth":
            server.send(ws, {"type": "state", "state": "logged_out"})
            server.send(ws, {"type": "error", "code": "logged_out", "message": "unlinked"})
        elif frame["type"] == "request_qr":
            server.send(ws, {"type": "state", "state": "starting"})

    server.on_frame = script
    open_page(page)
    expect(page.get_by_test_id("state-text")).to_have_text("WhatsApp отвязан на телефоне")
    assert tab_walk(page, 2) == ["lang-toggle", "new-qr"]
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("new-qr")).to_be_hidden()
    expect(page.get_by_test_id("state-text")).to_be_focused()
    expect(page.get_by_test_id("state-text")).to_have_text("Готовим QR-код…")
    server.send(server.sockets[0], {"type": "state", "state": "qr"})
    server.send(server.sockets[0], {"type": "qr", "qr": "2@k", "expires_in": 20, "seq": 1})
    expect(page.get_by_test_id("qr").locator("svg")).to_have_count(1)
