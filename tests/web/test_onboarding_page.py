"""The connect page in a real Chromium against a scripted server (Playwright routes, no network).

The page's HTTP and websocket traffic is answered in-process (tests/web/_scripted.py), and its timers run on
Playwright's fake clock, so these tests need no server and no real waiting. tests/e2e covers the page against
the real server; test_connect_states.py shows every state once, in both languages.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests._browser import decode_qr
from tests.web._scripted import QR_PAYLOAD, SIZES, TOKEN, FakeServer, expect, make_token, open_page

pytestmark = pytest.mark.browser

HOSTILE_PAYLOAD = '<svg onload="alert(1)"><script>alert(2)</script></svg>'


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


def _send_qr(server: FakeServer, payload: str) -> None:
    def script(ws: Any, frame: dict[str, Any]) -> None:
        if frame["type"] == "request_qr":
            server.send(ws, {"type": "state", "state": "qr"})
            server.send(ws, {"type": "qr", "qr": payload, "expires_in": 20, "seq": 1})
        else:
            server.default_script(ws, frame)

    server.on_frame = script


def test_a_hostile_payload_is_drawn_as_data_never_as_markup(page: Any, server: FakeServer) -> None:
    _send_qr(server, HOSTILE_PAYLOAD)
    open_page(page)
    svg = page.get_by_test_id("qr").locator("svg")
    expect(svg).to_have_count(1)
    # The page builds the drawing itself: a white square and one path, whatever the payload says.
    assert svg.evaluate("s => Array.from(s.children, c => c.localName)") == ["rect", "path"]
    assert page.locator("script").count() == 1  # onboarding.js, nothing the payload brought
    assert decode_qr(svg.screenshot()) == HOSTILE_PAYLOAD


def test_a_payload_no_qr_can_hold_is_said_not_drawn(page: Any, server: FakeServer) -> None:
    _send_qr(server, "x" * 3000)  # a version 40 code at its lowest correction holds 2,953 bytes
    open_page(page)
    expect(page.get_by_test_id("error-text")).to_have_text(
        "Не удалось нарисовать QR-код. Обновите страницу или войдите по номеру телефона."
    )
    expect(page.get_by_test_id("qr").locator("svg")).to_have_count(0)


def test_an_encoder_that_cannot_be_loaded_is_said_not_an_empty_box(
    page: Any, server: FakeServer, errors: list[str]
) -> None:
    page.route("**/static/vendor/**", lambda route: route.fulfill(status=404, body="not found"))
    open_page(page)
    expect(page.get_by_test_id("state-text")).to_have_attribute("data-state", "qr")
    expect(page.get_by_test_id("error-text")).to_have_text(
        "Не удалось нарисовать QR-код. Обновите страницу или войдите по номеру телефона."
    )
    expect(page.get_by_test_id("mode-toggle")).to_be_visible()  # the way round it: link by phone number
    assert errors and all("404" in e for e in errors), errors  # the browser's own report of the failed load
    errors.clear()


@pytest.mark.parametrize(("size", "scale"), [("desktop", 1), ("phone", 3)])
def test_the_drawn_qr_reads_back_as_the_payload_on_whole_pixels_a_module(
    screen_page: Any, size: str, scale: int
) -> None:
    page = screen_page(viewport=SIZES[size], device_scale_factor=scale)
    open_page(page)
    svg = page.get_by_test_id("qr").locator("svg")
    expect(svg).to_have_count(1)
    expect(svg).to_have_attribute("shape-rendering", "crispEdges")
    modules = int(svg.get_attribute("data-modules"))
    box = svg.bounding_box()
    pixels = box["width"] * scale / modules  # device pixels a module (layout keeps 1/64 px)
    assert abs(pixels - round(pixels)) < 0.01 and pixels >= 3, (box, modules)
    assert abs(box["width"] - box["height"]) < 0.01
    room = page.get_by_test_id("qr").bounding_box()["width"] - 10  # padding and border
    assert room - modules / scale < box["width"] <= room  # as large as whole pixels allow
    assert decode_qr(svg.screenshot()) == QR_PAYLOAD


@pytest.mark.parametrize(("phone", "shown"), [("79001234567", "+7 900 123-45-67"), ("447700900123", "+447700900123")])
def test_connected_shows_the_formatted_phone(page: Any, server: FakeServer, phone: str, shown: str) -> None:
    server.on_frame = lambda ws, f: server.send(ws, {"type": "connected", "phone": phone})
    open_page(page)
    expect(page.get_by_test_id("state-text")).to_have_text("WhatsApp подключён")
    expect(page.get_by_test_id("phone-display")).to_have_text(shown)


def _refuse(server: FakeServer) -> None:
    def refuse(ws: Any, frame: dict[str, Any]) -> None:
        server.send(ws, {"type": "error", "code": "unauthorized", "message": "bad token"})
        ws.close(code=4401, reason="unauthorized")

    server.on_frame = refuse


def test_a_refused_expired_token_says_the_link_expired_and_stops_retrying(page: Any, server: FakeServer) -> None:
    _refuse(server)
    open_page(page, token=make_token(exp=1_600_000_000))
    expect(page.get_by_test_id("state-text")).to_have_text("Ссылка устарела")
    expect(page.get_by_test_id("state-text")).to_have_attribute("data-state", "auth")
    page.clock.run_for(120_000)
    expect(page.get_by_test_id("connection-banner")).to_be_hidden()
    assert len(server.sockets) == 1
    assert not [h for h in server.http if h[1].startswith("/marketplace/api/")]


def test_a_refused_unexpired_token_says_the_link_failed_verification(page: Any, server: FakeServer) -> None:
    _refuse(server)  # a tampered signature: the page cannot tell, the server can
    open_page(page)
    expect(page.get_by_test_id("state-text")).to_have_text("Ссылка не прошла проверку")
    expect(page.get_by_test_id("state-text")).to_have_attribute("data-state", "invalid")
    page.clock.run_for(60_000)
    assert len(server.sockets) == 1


def test_a_token_that_expires_while_open_says_the_link_expired(page: Any, server: FakeServer) -> None:
    open_page(page)
    expect(page.get_by_test_id("state-text")).to_have_attribute("data-state", "qr")
    server.send(server.sockets[0], {"type": "error", "code": "token_expired", "message": "expired"})
    server.sockets[0].close(code=4401, reason="token expired")
    expect(page.get_by_test_id("state-text")).to_have_text("Ссылка устарела")
    expect(page.get_by_test_id("panel-qr")).to_be_hidden()


@pytest.mark.parametrize("garbled", ["not-a-token", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.eyJmb28iOjF9.sig"])
def test_a_garbled_token_is_invalid_without_asking_the_server(page: Any, server: FakeServer, garbled: str) -> None:
    open_page(page, token=garbled)
    expect(page.get_by_test_id("state-text")).to_have_text("Ссылка не прошла проверку")
    page.clock.run_for(10_000)
    assert server.sockets == []


def test_a_new_token_in_the_fragment_is_honoured_without_a_reload(page: Any, server: FakeServer) -> None:
    open_page(page)
    expect(page.get_by_test_id("salon")).to_have_text("Салон № 101")
    other = make_token(202)
    page.evaluate("window.sameDocument = true")
    page.evaluate("token => { location.hash = '#token=' + token; }", other)
    expect(page.get_by_test_id("salon")).to_have_text("Салон № 202")
    expect(page.get_by_test_id("qr").locator("svg")).to_have_count(1)
    assert {"type": "auth", "token": other} in server.frames
    assert "token" not in page.url
    assert page.evaluate("window.sameDocument === true")  # no reload


def test_a_new_token_rescues_a_page_that_said_the_link_expired(page: Any, server: FakeServer) -> None:
    _refuse(server)
    open_page(page, token=make_token(exp=1_600_000_000))
    expect(page.get_by_test_id("state-text")).to_have_text("Ссылка устарела")
    server.on_frame = server.default_script
    page.evaluate("token => { location.hash = '#token=' + token; }", make_token(101))
    expect(page.get_by_test_id("state-text")).to_have_attribute("data-state", "qr")


@pytest.mark.parametrize(
    ("title", "shown"),
    [("Салон красоты №101", "Салон красоты №101"), ("Beauty 101", "Beauty 101"), ("Лак и Ко", "Лак и Ко · № 101")],
)
def test_the_salon_number_is_not_repeated_when_the_title_names_it(
    page: Any, server: FakeServer, title: str, shown: str
) -> None:
    open_page(page, token=make_token(101, title=title))
    expect(page.get_by_test_id("salon")).to_have_text(shown)


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


def _qr_then_server_gone(page: Any, server: FakeServer) -> None:
    open_page(page)
    expect(page.get_by_test_id("qr").locator("svg")).to_have_count(1)
    server.down = True
    server.sockets[0].close(code=1006, reason="gone")
    expect(page.get_by_test_id("state-text")).to_have_text("Нет связи с сервером")


def test_an_unreachable_server_greys_the_page_and_hides_the_stale_qr(page: Any, server: FakeServer) -> None:
    _qr_then_server_gone(page, server)
    expect(page.get_by_test_id("state-text")).to_have_attribute("data-state", "offline")
    expect(page.get_by_test_id("app")).to_have_class("card is-offline")
    expect(page.get_by_test_id("panel-qr")).to_be_hidden()
    expect(page.get_by_test_id("connection-banner")).to_be_hidden()  # the heading says it, once
    expect(page.get_by_test_id("error-text")).to_be_hidden()


def test_the_page_recovers_within_seconds_of_the_servers_return(page: Any, server: FakeServer) -> None:
    _qr_then_server_gone(page, server)
    page.clock.run_for(300_000)  # five minutes away: the websocket back-off is at its 30 s cap by now
    sockets_before = len(server.sockets)
    server.down = False
    page.clock.run_for(3_500)  # one poll interval and a little
    expect(page.get_by_test_id("state-text")).to_have_attribute("data-state", "qr")
    expect(page.get_by_test_id("qr").locator("svg")).to_have_count(1)
    expect(page.get_by_test_id("app")).to_have_class("card")
    assert len(server.sockets) == sockets_before + 1
    # The QR on screen went stale while the server was away: the page asked for a fresh one by itself.
    assert server.sent("request_qr") == 2


def test_a_websocket_that_drops_while_the_server_answers_is_not_offline(page: Any, server: FakeServer) -> None:
    open_page(page)
    expect(page.get_by_test_id("qr").locator("svg")).to_have_count(1)
    server.sockets[0].close(code=1011, reason="restart")
    expect(page.get_by_test_id("connection-banner")).to_have_text("Связь с сервером прервалась — переподключаемся…")
    expect(page.get_by_test_id("state-text")).to_have_attribute("data-state", "qr")


def test_an_uninstall_after_a_freeze_shows_live(page: Any, server: FakeServer) -> None:
    server.script([{"type": "state", "state": "frozen"}, {"type": "error", "code": "frozen", "message": "paused"}])
    server.status_answer = {"salon_id": 101, "state": "frozen", "phone": None}
    open_page(page)
    expect(page.get_by_test_id("state-text")).to_have_text("Подписка на приложение приостановлена")
    server.status_answer = {"salon_id": 101, "state": "uninstalled", "phone": None}
    page.clock.run_for(5_500)
    expect(page.get_by_test_id("state-text")).to_have_text("Приложение отключено в YClients")
    expect(page.get_by_test_id("error-text")).to_be_hidden()


def test_a_reinstall_while_the_page_is_open_brings_a_qr_without_a_reload(page: Any, server: FakeServer) -> None:
    server.script([{"type": "state", "state": "uninstalled"}])
    server.status_answer = {"salon_id": 101, "state": "uninstalled", "phone": None}
    open_page(page)
    expect(page.get_by_test_id("state-text")).to_have_text("Приложение отключено в YClients")
    server.status_answer = {"salon_id": 101, "state": "idle", "phone": None}
    page.clock.run_for(5_500)
    expect(page.get_by_test_id("qr").locator("svg")).to_have_count(1)
    assert server.sent("request_qr") == 1


def _connected_then_reconnecting(page: Any, server: FakeServer, reason: str) -> None:
    server.script([{"type": "state", "state": "connected", "phone": "79001234567"}])
    open_page(page)
    expect(page.get_by_test_id("state-text")).to_have_text("WhatsApp подключён")
    server.send(server.sockets[0], {"type": "state", "state": "reconnecting", "phone": "79001234567", "reason": reason})


def test_an_unlink_reported_while_connected_is_said_at_once(page: Any, server: FakeServer) -> None:
    _connected_then_reconnecting(page, server, "logged_out")
    expect(page.get_by_test_id("state-text")).to_have_text("Телефон сообщил об отвязке — проверяем…")
    expect(page.get_by_test_id("state-detail")).not_to_contain_text("Ничего делать не нужно")
    server.send(
        server.sockets[0], {"type": "state", "state": "connecting", "phone": "79001234567", "reason": "logged_out"}
    )
    expect(page.get_by_test_id("state-text")).to_have_text("Телефон сообщил об отвязке — проверяем…")
    server.send(server.sockets[0], {"type": "state", "state": "logged_out"})
    server.send(server.sockets[0], {"type": "error", "code": "logged_out", "message": "WhatsApp was unlinked"})
    expect(page.get_by_test_id("state-text")).to_have_text("WhatsApp отвязан на телефоне")
    expect(page.get_by_test_id("error-text")).to_be_hidden()
    expect(page.get_by_test_id("new-qr")).to_be_visible()


def test_a_network_reconnect_of_a_linked_number_says_nothing_is_needed(page: Any, server: FakeServer) -> None:
    _connected_then_reconnecting(page, server, "network_error")
    expect(page.get_by_test_id("state-text")).to_have_text("Восстанавливаем связь с WhatsApp…")
    server.send(server.sockets[0], {"type": "state", "state": "connecting", "phone": "79001234567"})
    expect(page.get_by_test_id("state-text")).to_have_text("Восстанавливаем связь с WhatsApp…")  # not "code accepted"


def test_an_unknown_error_says_so_in_the_page_language_with_its_code(page: Any, server: FakeServer) -> None:
    open_page(page)
    expect(page.get_by_test_id("state-text")).to_have_attribute("data-state", "qr")
    server.send(server.sockets[0], {"type": "error", "code": "weird_thing", "message": "An English sentence"})
    error = page.get_by_test_id("error-text")
    expect(error).to_have_text(
        "Что-то пошло не так. Попробуйте ещё раз; если повторяется — напишите в поддержку и назовите код «weird_thing»."
    )


def test_pairing_rejects_a_short_number_without_asking_the_server(page: Any, server: FakeServer) -> None:
    open_page(page)
    page.get_by_test_id("mode-toggle").click()
    page.get_by_test_id("pairing-input").fill("12345")
    page.get_by_test_id("pairing-submit").click()
    expect(page.get_by_test_id("pairing-error")).to_be_visible()
    assert not [f for f in server.frames if f["type"] == "request_pairing_code"]


def test_pairing_sends_normalised_digits_and_shows_the_code(page: Any, server: FakeServer) -> None:
    server.answer_pairing()
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


def test_missing_token_says_there_is_no_link(page: Any, server: FakeServer) -> None:
    page.goto("http://salon.test/marketplace/onboarding")
    expect(page.get_by_test_id("state-text")).to_have_text("Нет ссылки для подключения")
    expect(page.get_by_test_id("state-detail")).to_contain_text("маркетплейса YClients")
    assert server.sockets == []


def test_the_phone_example_never_breaks_inside_the_number(page: Any, server: FakeServer) -> None:
    open_page(page)
    page.get_by_test_id("mode-toggle").click()
    example = page.locator("#phone-hint .nowrap")
    expect(example).to_have_text("+7\u00a0900\u00a0123-45-67")
    assert example.evaluate("el => el.getClientRects().length") == 1


def _one_of(template: str, *values: int) -> Any:
    import re

    return re.compile("^(" + "|".join(re.escape(template.format(v)) for v in values) + ")$")
