"""The connect page in a real Chromium against a scripted server (Playwright routes, no network).

The page's HTTP and websocket traffic is answered in-process by `page.route` / `page.route_web_socket`,
and its timers run on Playwright's fake clock, so these tests need no server and no real waiting. The lead's
e2e tests cover the page against the real server.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web._web_assets import WEB

pytestmark = pytest.mark.browser

ORIGIN = "http://salon.test"
CSP = "default-src 'self'; img-src 'self' data:"
QR_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="29mm" height="29mm" viewBox="0 0 29 29">'
    '<path d="M4 4h7v7h-7zM18 4h7v7h-7zM4 18h7v7h-7z"/></svg>'
)
HOSTILE_SVG = QR_SVG.replace('"/>', '" onclick="alert(1)"/><script>alert(2)</script>')


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


TOKEN = _b64({"alg": "HS256"}) + "." + _b64({"salon_id": 101, "sub": "101"}) + ".signature"


class FakeServer:
    """Answers the page's routes; `on_frame` scripts the websocket side."""

    def __init__(self) -> None:
        self.sockets: list[Any] = []
        self.frames: list[dict[str, Any]] = []
        self.http: list[tuple[str, str, str | None]] = []
        self.on_frame: Callable[[Any, dict[str, Any]], None] = self.default_script
        self.http_answer: dict[str, Any] = {"state": "qr", "qr": "2@polled", "svg": QR_SVG, "expires_in": 15}

    @staticmethod
    def send(ws: Any, frame: dict[str, Any]) -> None:
        ws.send(json.dumps(frame))

    def default_script(self, ws: Any, frame: dict[str, Any]) -> None:
        if frame == {"type": "auth", "token": TOKEN}:
            self.send(ws, {"type": "state", "state": "idle"})
        elif frame["type"] == "request_qr":
            self.send(ws, {"type": "state", "state": "qr"})
            self.send(ws, {"type": "qr", "qr": "2@raw", "svg": QR_SVG, "expires_in": 20, "seq": 1})

    def websocket(self, ws: Any) -> None:
        self.sockets.append(ws)

        def received(message: str | bytes) -> None:
            frame = json.loads(message)
            self.frames.append(frame)
            self.on_frame(ws, frame)

        ws.on_message(received)

    def route(self, route: Any) -> None:
        request = route.request
        path = request.url.removeprefix(ORIGIN).split("?")[0].split("#")[0]
        self.http.append((request.method, path, request.headers.get("authorization")))
        if path == "/marketplace/onboarding":
            body = (WEB / "onboarding.html").read_text(encoding="utf-8")
            route.fulfill(body=body, content_type="text/html; charset=utf-8", headers={"Content-Security-Policy": CSP})
        elif path.startswith("/static/") and (WEB / path.removeprefix("/static/")).is_file():
            file = Path(WEB / path.removeprefix("/static/"))
            kind = "text/css" if file.suffix == ".css" else "text/javascript"
            route.fulfill(body=file.read_text(encoding="utf-8"), content_type=kind)
        elif path in ("/marketplace/api/qr", "/marketplace/api/status"):
            route.fulfill(json=self.http_answer)
        else:
            route.fulfill(status=404, body="not found")


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
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.clock.install()
    page.route(f"{ORIGIN}/**", server.route)
    page.route_web_socket(f"{ORIGIN.replace('http', 'ws')}/marketplace/ws", server.websocket)
    yield page
    context.close()
    assert errors == [], errors  # CSP violations and script errors show up here


def open_page(page: Any, query: str = "") -> None:
    page.goto(f"{ORIGIN}/marketplace/onboarding{query}#token={TOKEN}")


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(locator)


def test_token_leaves_the_url_and_authenticates_the_websocket(page: Any, server: FakeServer) -> None:
    open_page(page)
    expect(page.get_by_test_id("qr").locator("svg")).to_have_count(1)
    assert "token" not in page.url
    assert server.frames[0] == {"type": "auth", "token": TOKEN}


def test_idle_state_asks_for_a_qr_and_shows_it_with_a_countdown(page: Any, server: FakeServer) -> None:
    open_page(page)
    expect(page.get_by_test_id("state-text")).to_have_attribute("data-state", "qr")
    expect(page.get_by_test_id("qr-countdown")).to_have_text(_one_of("Новый код через {} с", 19, 20))
    page.clock.run_for(10_000)
    expect(page.get_by_test_id("qr-countdown")).to_have_text(_one_of("Новый код через {} с", 9, 10))


def test_qr_svg_is_scrubbed(page: Any, server: FakeServer, errors: list[str]) -> None:
    def script(ws: Any, frame: dict[str, Any]) -> None:
        if frame["type"] == "request_qr":
            server.send(ws, {"type": "qr", "qr": "2@raw", "svg": HOSTILE_SVG, "expires_in": 20, "seq": 1})
        else:
            server.default_script(ws, frame)

    server.on_frame = script
    open_page(page)
    svg = page.get_by_test_id("qr").locator("svg")
    expect(svg).to_have_count(1)
    assert svg.locator("script").count() == 0
    assert svg.locator("path").get_attribute("onclick") is None
    # Chromium reports the handler while parsing the detached SVG; CSP blocks it there too.
    assert all("inline event handler" in e for e in errors)
    errors.clear()


def test_qr_svg_scales_to_the_container_and_stays_crisp(page: Any, server: FakeServer) -> None:
    open_page(page)
    svg = page.get_by_test_id("qr").locator("svg")
    expect(svg).to_have_count(1)
    assert svg.get_attribute("shape-rendering") == "crispEdges"
    box = svg.bounding_box()
    assert 280 <= box["width"] <= 320 and abs(box["width"] - box["height"]) < 1


@pytest.mark.parametrize(("phone", "shown"), [("79001234567", "+7 900 123-45-67"), ("447700900123", "+447700900123")])
def test_connected_shows_the_formatted_phone(page: Any, server: FakeServer, phone: str, shown: str) -> None:
    server.on_frame = lambda ws, f: server.send(ws, {"type": "connected", "phone": phone})
    open_page(page)
    expect(page.get_by_test_id("state-text")).to_have_text("WhatsApp подключён")
    expect(page.get_by_test_id("phone-display")).to_have_text(shown)


def test_unauthorized_shows_expired_link_and_stops_retrying(page: Any, server: FakeServer) -> None:
    def refuse(ws: Any, frame: dict[str, Any]) -> None:
        server.send(ws, {"type": "error", "code": "unauthorized", "message": "bad token"})
        ws.close(code=4401, reason="unauthorized")

    server.on_frame = refuse
    open_page(page)
    expect(page.get_by_test_id("state-text")).to_have_text("Ссылка устарела")
    page.clock.run_for(120_000)
    expect(page.get_by_test_id("connection-banner")).to_be_hidden()
    assert len(server.sockets) == 1
    assert not [h for h in server.http if h[1].startswith("/marketplace/api/")]


def test_lost_websocket_shows_banner_and_polls_with_the_bearer_token(page: Any, server: FakeServer) -> None:
    server.on_frame = lambda ws, f: ws.close(code=1011, reason="gone")
    open_page(page)
    expect(page.get_by_test_id("connection-banner")).to_be_visible()
    expect(page.get_by_test_id("qr").locator("svg")).to_have_count(1)
    polls = [h for h in server.http if h[1] == "/marketplace/api/qr"]
    assert polls and polls[0] == ("POST", "/marketplace/api/qr", f"Bearer {TOKEN}")


def test_websocket_reconnects_after_a_second_and_hides_the_banner(page: Any, server: FakeServer) -> None:
    def first_drops(ws: Any, frame: dict[str, Any]) -> None:
        if len(server.sockets) == 1:
            ws.close(code=1011, reason="gone")
        else:
            server.send(ws, {"type": "state", "state": "connected", "phone": "79001234567"})

    server.on_frame = first_drops
    open_page(page)
    expect(page.get_by_test_id("connection-banner")).to_be_visible()
    page.clock.run_for(1_300)
    expect(page.get_by_test_id("state-text")).to_have_text("WhatsApp подключён")
    expect(page.get_by_test_id("connection-banner")).to_be_hidden()
    assert len(server.sockets) == 2


def test_pairing_rejects_a_short_number_without_asking_the_server(page: Any, server: FakeServer) -> None:
    open_page(page)
    page.get_by_test_id("mode-toggle").click()
    page.get_by_test_id("pairing-input").fill("12345")
    page.get_by_test_id("pairing-submit").click()
    expect(page.get_by_test_id("pairing-error")).to_be_visible()
    assert not [f for f in server.frames if f["type"] == "request_pairing_code"]


def test_pairing_sends_normalised_digits_and_shows_the_code(page: Any, server: FakeServer) -> None:
    def script(ws: Any, frame: dict[str, Any]) -> None:
        if frame["type"] == "request_pairing_code":
            server.send(ws, {"type": "pairing_code", "code": "ABCD-EFGH", "expires_in": 50})
        else:
            server.default_script(ws, frame)

    server.on_frame = script
    open_page(page)
    page.get_by_test_id("mode-toggle").click()
    page.get_by_test_id("pairing-input").fill("8 (900) 123-45-67")
    page.get_by_test_id("pairing-submit").click()
    expect(page.get_by_test_id("pairing-code")).to_have_text("ABCD-EFGH")
    assert {"type": "request_pairing_code", "phone": "79001234567"} in server.frames


def test_idle_after_a_qr_offers_a_new_qr_that_asks_again(page: Any, server: FakeServer) -> None:
    open_page(page)
    expect(page.get_by_test_id("state-text")).to_have_attribute("data-state", "qr")
    server.send(server.sockets[0], {"type": "state", "state": "idle"})
    expect(page.get_by_test_id("state-text")).to_have_text("QR-код устарел")
    page.get_by_test_id("new-qr").click()
    expect(page.get_by_test_id("state-text")).to_have_attribute("data-state", "qr")
    assert [f["type"] for f in server.frames].count("request_qr") == 2


def test_language_toggle_switches_and_is_remembered(page: Any, server: FakeServer) -> None:
    open_page(page)
    page.get_by_test_id("lang-toggle").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_test_id("state-text")).to_have_text("Scan the QR code with the phone")
    page.reload()
    expect(page.locator("html")).to_have_attribute("lang", "en")


def test_lang_query_parameter_chooses_english(page: Any, server: FakeServer) -> None:
    open_page(page, "?lang=en")
    expect(page.get_by_test_id("state-text")).to_have_text("Scan the QR code with the phone")


def test_missing_token_says_the_link_expired(page: Any, server: FakeServer) -> None:
    page.goto(f"{ORIGIN}/marketplace/onboarding")
    expect(page.get_by_test_id("state-text")).to_have_text("Ссылка устарела")
    assert server.sockets == []


def _one_of(template: str, *values: int) -> Any:
    import re

    return re.compile("^(" + "|".join(re.escape(template.format(v)) for v in values) + ")$")
