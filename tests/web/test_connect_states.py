"""Every screen of the connect page, in Russian and English: the one message it says (exact words, so a wrong or
a second message fails), no red error box where nothing went wrong, axe-core finding nothing serious or
critical, and a screenshot at 1280×800 and 375×812 in tests/artifacts/ for a person to look at.

The frames are those the server sends for each state (tests/e2e checks the real server sends them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest

from tests.web._axe import blocking, run_axe
from tests.web._scripted import ARTIFACTS, QR_PAYLOAD, SIZES, FakeServer, expect, make_token, open_page

pytestmark = pytest.mark.browser

PHONE = "79001234567"
QR = [{"type": "state", "state": "qr"}, {"type": "qr", "qr": QR_PAYLOAD, "expires_in": 60, "seq": 1}]
LINKED = [{"type": "state", "state": "connected", "phone": PHONE}, {"type": "connected", "phone": PHONE}]


def reason(state: str, code: str, message: str = "") -> list[dict[str, Any]]:
    return [{"type": "state", "state": state}, {"type": "error", "code": code, "message": message or "English"}]


@attrs.frozen
class Screen:
    """One screen: what the server says, then what the page must say in each language."""

    frames: list[dict[str, Any]]
    ru: tuple[str, str]  # title, the start of the detail
    en: tuple[str, str]
    new_qr: bool = False  # the "New QR code" / "Try again" button is offered
    error_box: bool = False  # a real error, in the red box
    after_qr: bool = False  # the frames come after a QR was shown (the page asked once)
    act: Callable[[Any], None] | None = None  # what the person does first
    token: str | None = None
    refuse: bool = False
    down: bool = False


def _to_phone(page: Any) -> None:
    page.get_by_test_id("mode-toggle").click()


def _pairing(page: Any) -> None:
    page.get_by_test_id("mode-toggle").click()
    page.get_by_test_id("pairing-input").fill("+7 900 123-45-67")
    page.get_by_test_id("pairing-submit").click()


SCREENS: dict[str, Screen] = {
    "loading": Screen([], ("Загрузка…", "Соединяемся с сервером."), ("Loading…", "Connecting to the server.")),
    "preparing": Screen(
        [{"type": "state", "state": "starting"}],
        ("Готовим QR-код…", "Соединяемся с WhatsApp"),
        ("Preparing the QR code…", "Connecting to WhatsApp"),
    ),
    "qr": Screen(
        QR,
        ("Отсканируйте QR-код телефоном", "Откройте WhatsApp на телефоне салона"),
        ("Scan the QR code with the phone", "Open WhatsApp on the salon's phone"),
    ),
    "qr_expired": Screen(
        reason("idle", "qr_expired"),
        ("QR-код устарел", "Время на сканирование вышло."),
        ("The QR code has expired", "Time to scan ran out."),
        new_qr=True,
        after_qr=True,
    ),
    "connection_lost": Screen(
        reason("idle", "connection_lost"),
        ("Связь с WhatsApp прервалась", "Это случилось во время привязки."),
        ("The connection to WhatsApp dropped", "It happened while linking."),
        new_qr=True,
        after_qr=True,
    ),
    "phone": Screen(
        QR,
        ("Вход по номеру телефона", "Введите номер WhatsApp салона"),
        ("Link with a phone number", "Enter the salon's WhatsApp number"),
        act=_to_phone,
    ),
    "pairing_code": Screen(
        QR,
        ("Введите код на телефоне", ""),
        ("Enter the code on the phone", ""),
        act=_pairing,
    ),
    "connecting": Screen(
        [{"type": "state", "state": "connecting", "phone": PHONE}],
        ("Код принят — подключаемся…", "Не закрывайте WhatsApp"),
        ("Code accepted — connecting…", "Keep WhatsApp open"),
    ),
    "connected": Screen(
        LINKED,
        ("WhatsApp подключён", "Готово!"),
        ("WhatsApp is connected", "All done!"),
    ),
    "reconnecting": Screen(
        [*LINKED, {"type": "state", "state": "reconnecting", "phone": PHONE, "reason": "network_error"}],
        ("Восстанавливаем связь с WhatsApp…", "Номер уже привязан"),
        ("Restoring the WhatsApp connection…", "The number is linked"),
    ),
    "whatsapp_unreachable": Screen(
        [*LINKED, {"type": "state", "state": "reconnecting", "phone": PHONE, "reason": "whatsapp_unreachable"}],
        ("WhatsApp сейчас недоступен", "Номер привязан. Мы проверяем связь с WhatsApp каждые несколько минут"),
        ("WhatsApp is unreachable right now", "The number is linked. We check the connection to WhatsApp"),
    ),
    "unlink_reported": Screen(
        [*LINKED, {"type": "state", "state": "reconnecting", "phone": PHONE, "reason": "logged_out"}],
        ("Телефон сообщил об отвязке — проверяем…", "Проверяем, привязано ли ещё устройство."),
        ("The phone reported an unlink — checking…", "Checking whether the device is still linked."),
    ),
    "logged_out": Screen(
        reason("logged_out", "logged_out"),
        ("WhatsApp отвязан на телефоне", "Устройство удалено из «Связанных устройств»."),
        ("WhatsApp was unlinked on the phone", "The device was removed from “Linked devices”."),
        new_qr=True,
    ),
    "banned": Screen(
        reason("logged_out", "banned"),
        ("WhatsApp заблокировал этот номер", "WhatsApp заблокировал номер и отвязал устройство."),
        ("WhatsApp banned this number", "WhatsApp banned the number and unlinked the device."),
        new_qr=True,
    ),
    "unlinked_by_support": Screen(
        reason("logged_out", "logout"),
        ("WhatsApp отвязан поддержкой", "Устройство отвязала наша поддержка."),
        ("WhatsApp was unlinked by support", "Our support unlinked the device."),
        new_qr=True,
    ),
    "conflict": Screen(
        reason("conflict", "connection_replaced"),
        ("WhatsApp подключён в другом месте", "Этот номер WhatsApp сейчас использует другое подключение"),
        ("WhatsApp is connected elsewhere", "Another connection is using this WhatsApp number"),
    ),
    "failed": Screen(
        [{"type": "state", "state": "failed"}],
        ("Не удалось подключить WhatsApp", "Нажмите «Попробовать снова»."),
        ("Could not connect WhatsApp", "Press “Try again”."),
        new_qr=True,
    ),
    "temporarily_banned": Screen(
        reason(
            "failed", "temporarily_banned", "WhatsApp temporarily banned this number. The ban ends in about 12 min."
        ),
        ("WhatsApp временно ограничил номер", "Подключение восстановится само"),
        ("WhatsApp temporarily restricted the number", "The connection resumes by itself"),
    ),
    "client_outdated": Screen(
        reason("failed", "client_outdated"),
        ("WhatsApp не принимает нашу версию", "Мы уже знаем об этом"),
        ("WhatsApp does not accept our version", "We already know"),
    ),
    "reconnect_exhausted": Screen(
        reason("failed", "reconnect_exhausted"),
        ("Не удаётся восстановить связь с WhatsApp", "Мы несколько раз пробовали переподключиться."),
        ("Cannot restore the connection to WhatsApp", "We tried to reconnect several times."),
        new_qr=True,
    ),
    "transport_mismatch": Screen(
        reason("failed", "transport_mismatch"),
        ("Сервер не узнал сохранённое подключение", "Подключение WhatsApp сохранено и не удалено"),
        ("The server did not recognise the saved connection", "Your WhatsApp connection is kept, not deleted"),
        new_qr=True,
    ),
    "frozen": Screen(
        reason("frozen", "frozen"),
        ("Подписка на приложение приостановлена", "Оплаченный период закончился."),
        ("The app subscription is paused", "The paid period has ended."),
    ),
    "uninstalled": Screen(
        reason("uninstalled", "uninstalled"),
        ("Приложение отключено в YClients", "Чтобы снова подключить WhatsApp"),
        ("The app was removed in YClients", "To connect WhatsApp again"),
    ),
    "rate_limited": Screen(
        [*QR, {"type": "error", "code": "rate_limited", "message": "English"}],
        ("Отсканируйте QR-код телефоном", "Откройте WhatsApp на телефоне салона"),
        ("Scan the QR code with the phone", "Open WhatsApp on the salon's phone"),
        error_box=True,
    ),
    "link_expired": Screen(
        [],
        ("Ссылка устарела", "Ссылка действует 1 час."),
        ("This link has expired", "The link lasts 1 hour."),
        token=make_token(exp=1_600_000_000),
        refuse=True,
    ),
    "link_invalid": Screen(
        [],
        ("Ссылка не прошла проверку", "Похоже, ссылка скопирована не полностью"),
        ("This link is not valid", "The link looks incomplete"),
        refuse=True,
    ),
    "no_link": Screen(
        [],
        ("Нет ссылки для подключения", "Эта страница открывается из маркетплейса YClients."),
        ("No connection link", "This page opens from the YClients marketplace."),
        token="",
    ),
    "offline": Screen(
        QR,
        ("Нет связи с сервером", "Проверьте интернет."),
        ("No connection to the server", "Check the internet connection."),
        down=True,
    ),
}

ERROR_BOX = {
    "ru": "Слишком много попыток. Подождите минуту и попробуйте снова.",
    "en": "Too many attempts. Wait a minute and try again.",
}


def _arrange(server: FakeServer, page: Any, screen: Screen, lang: str) -> None:
    qr_flow = bool(screen.frames) and screen.frames[0].get("state") in ("qr", "starting")

    def script(ws: Any, frame: dict[str, Any]) -> None:
        if screen.refuse:
            server.send(ws, {"type": "error", "code": "unauthorized", "message": "English"})
            ws.close(code=4401, reason="unauthorized")
        elif frame["type"] == "auth" and (qr_flow or screen.after_qr):
            server.send(ws, {"type": "state", "state": "idle"})  # a fresh salon: the page asks for a QR
        elif frame["type"] == "auth":
            for item in screen.frames:  # a salon already past the QR
                server.send(ws, item)
        elif frame["type"] == "request_qr":
            for item in [*QR, *screen.frames] if screen.after_qr else screen.frames:
                server.send(ws, item)
        elif frame["type"] == "request_pairing_code":
            server.send(ws, {"type": "pairing_code", "code": "ABCD-EFGH", "expires_in": 60})

    server.on_frame = script if screen.frames or screen.refuse else (lambda ws, frame: None)
    query = "?lang=en" if lang == "en" else ""
    if screen.token == "":
        page.goto(f"http://salon.test/marketplace/onboarding{query}")
    else:
        open_page(page, query, token=screen.token or make_token(101, title="Салон красоты №101"))
    if screen.down:
        expect(page.get_by_test_id("qr").locator("svg")).to_have_count(1)
        server.down = True
        server.sockets[-1].close(code=1006, reason="gone")
    if screen.act is not None:
        expect(page.get_by_test_id("mode-toggle")).to_be_visible()
        screen.act(page)


@pytest.mark.parametrize("lang", ["ru", "en"])
@pytest.mark.parametrize("name", list(SCREENS))
def test_each_screen_says_one_true_thing_in_the_salons_language(
    live_page: Any, server: FakeServer, name: str, lang: str
) -> None:
    page = live_page
    screen = SCREENS[name]
    _arrange(server, page, screen, lang)
    title, detail = screen.ru if lang == "ru" else screen.en
    expect(page.get_by_test_id("state-text")).to_have_text(title)
    expect(page.get_by_test_id("state-detail")).to_have_text(detail if not detail else _starts(detail))
    expect(page.locator("html")).to_have_attribute("lang", lang)
    if screen.error_box:
        expect(page.get_by_test_id("error-text")).to_have_text(ERROR_BOX[lang])
    else:
        expect(page.get_by_test_id("error-text")).to_be_hidden()
    if screen.new_qr:
        expect(page.get_by_test_id("new-qr")).to_be_visible()
    else:
        expect(page.get_by_test_id("new-qr")).to_be_hidden()
    # No word of the other language anywhere in the card (but the salon's own name, and the language button,
    # which names the other language by design).
    text = page.get_by_test_id("app").inner_text()
    for own in ("lang-toggle", "salon"):
        text = text.replace(page.get_by_test_id(own).inner_text(), "")
    if lang == "en":
        assert not any("а" <= ch.lower() <= "я" for ch in text), text
    for size, viewport in SIZES.items():
        page.set_viewport_size(viewport)
        assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / f"connect-{name}-{lang}-{size}.png", full_page=True)


@pytest.mark.parametrize("lang", ["ru", "en"])
@pytest.mark.parametrize("name", list(SCREENS))
def test_each_screen_has_no_serious_accessibility_violation(
    live_page: Any, server: FakeServer, name: str, lang: str
) -> None:
    page = live_page
    screen = SCREENS[name]
    _arrange(server, page, screen, lang)
    expect(page.get_by_test_id("state-text")).to_have_text((screen.ru if lang == "ru" else screen.en)[0])
    for size, viewport in SIZES.items():
        page.set_viewport_size(viewport)
        assert blocking(run_axe(page, f"connect-{name}-{lang}-{size}")) == []


def _starts(prefix: str) -> Any:
    import re

    return re.compile("^" + re.escape(prefix))


def test_the_accessibility_check_itself_catches_a_serious_violation(live_page: Any) -> None:
    # The harness must be able to fail: an unlabeled field and a nameless button are what axe calls critical.
    live_page.set_content("<html lang='en'><title>x</title><main><input type='text'><button></button></main></html>")
    found = blocking(run_axe(live_page, "self-test"))
    assert any(line.startswith("label (critical)") for line in found), found
    assert any(line.startswith("button-name (critical)") for line in found), found
