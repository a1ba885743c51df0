"""The salon's way in, in a real Chromium against a real `actor-admin dev`.

Screenshots of each state land in tests/artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests._browser import decode_qr
from tests.web._axe import blocking, run_axe
from tests.web._scripted import expect

pytestmark = pytest.mark.browser

PHONE = "79001234567"


def onboarding_url(base: str, salon_id: int) -> str:
    """Follow the fake marketplace's install redirect to our connect page URL (token in the fragment)."""
    install = httpx.get(f"{base}/_dev/yclients/install", params={"salon_id": salon_id})
    assert install.status_code == 302, install.text
    redirect = httpx.get(install.headers["location"])
    assert redirect.status_code == 302, redirect.text
    location = redirect.headers["location"]
    assert location.startswith("/marketplace/onboarding#token="), location
    return base + location


@pytest.fixture
def page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1100, "height": 900}, locale="ru-RU")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, errors


# A desktop, and a phone's screen at three device pixels a CSS pixel, as most phones have.
SCREENS = {
    "desktop": {"viewport": {"width": 1100, "height": 900}},
    "phone": {
        "viewport": {"width": 375, "height": 812},
        "device_scale_factor": 3,
        "is_mobile": True,
        "has_touch": True,
    },
}


@pytest.mark.parametrize(("screen", "salon_id"), [("desktop", 501), ("phone", 507)])
def test_the_qr_the_page_draws_decodes_to_the_payload_whatsapp_issued(
    dev_server: str, browser: Any, artifacts: Path, screen: str, salon_id: int
) -> None:
    context = browser.new_context(locale="ru-RU", **SCREENS[screen])
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(onboarding_url(dev_server, salon_id))
        qr = page.get_by_test_id("qr")
        qr.locator("svg").wait_for(timeout=15000)
        assert "#token" not in page.url  # the token is wiped from the address bar at once
        page.screenshot(path=artifacts / f"connect-qr-{screen}.png")
        shown = decode_qr(qr.screenshot())
        issued = httpx.get(f"{dev_server}/_dev/whatsapp/qr", params={"salon_id": salon_id}).json()["qr"]
        assert shown == issued
        assert not errors, errors
    finally:
        context.close()


def open_and_scan(page: Any, base: str, salon_id: int, phone: str) -> None:
    """The salon opens its connect page and scans the QR it shows with ``phone``."""
    page.goto(onboarding_url(base, salon_id))
    page.get_by_test_id("qr").locator("svg").wait_for(timeout=15000)
    qr = httpx.get(f"{base}/_dev/whatsapp/qr", params={"salon_id": salon_id}).json()["qr"]
    assert httpx.post(f"{base}/_dev/whatsapp/scan", json={"qr": qr, "phone": phone}).status_code == 200


def test_scanning_with_the_simulated_phone_shows_connected_with_the_number(
    dev_server: str, page: Any, artifacts: Path
) -> None:
    open_and_scan(page, dev_server, 502, PHONE)
    phone = page.get_by_test_id("phone-display")
    phone.wait_for(timeout=15000)
    assert "900 123-45-67" in phone.inner_text()
    page.screenshot(path=artifacts / "connect-connected.png")


def test_the_dev_landing_page_walks_from_install_to_the_activation_call(
    dev_server: str, page: Any, artifacts: Path
) -> None:
    page.goto(dev_server + "/")
    page.get_by_test_id("salon-id").fill("503")
    page.get_by_test_id("install").click()
    frame = page.frame_locator("[data-testid=marketplace-frame]")
    frame.locator("[data-testid=qr] svg").wait_for(timeout=15000)
    page.screenshot(path=artifacts / "landing-installed.png")
    page.get_by_test_id("scan").click()
    frame.locator("[data-testid=phone-display]").wait_for(timeout=15000)
    page.get_by_test_id("activation").filter(has_text="Activation delivered").wait_for(timeout=30000)
    assert "/marketplace/partner/callback" in page.get_by_test_id("calls").inner_text()
    page.screenshot(path=artifacts / "landing-activated.png", full_page=True)


def test_the_page_recovers_after_its_websocket_is_cut(dev_server: str, page: Any, artifacts: Path) -> None:
    # Every websocket of the page goes through Playwright to the real server, so the test can cut one.
    routes: list[Any] = []

    def proxy(ws: Any) -> None:
        ws.connect_to_server()
        routes.append(ws)

    page.route_web_socket("**/marketplace/ws", proxy)
    page.goto(onboarding_url(dev_server, 504))
    page.get_by_test_id("qr").locator("svg").wait_for(timeout=15000)
    assert len(routes) == 1
    with page.expect_websocket(timeout=15000):  # the page opens a new one by itself (back-off ~1 s)
        routes[0].close(code=1011, reason="cut by the test")
    qr = httpx.get(f"{dev_server}/_dev/whatsapp/qr", params={"salon_id": 504}).json()["qr"]
    httpx.post(f"{dev_server}/_dev/whatsapp/scan", json={"qr": qr, "phone": "79007654321"})
    page.get_by_test_id("phone-display").wait_for(timeout=15000)
    page.screenshot(path=artifacts / "connect-after-reconnect.png")


def test_language_switch_turns_the_page_english_and_back(dev_server: str, page: Any) -> None:
    page.goto(onboarding_url(dev_server, 505))
    page.get_by_test_id("qr").locator("svg").wait_for(timeout=15000)
    assert page.evaluate("document.documentElement.lang") == "ru"
    russian = page.get_by_test_id("state-text").inner_text()
    page.get_by_test_id("lang-toggle").click()
    assert page.evaluate("document.documentElement.lang") == "en"
    english = page.get_by_test_id("state-text").inner_text()
    assert english != russian and english.isascii()


def test_the_connect_page_fits_a_375px_phone_screen(dev_server: str, phone_page: Any, artifacts: Path) -> None:
    phone_page.goto(onboarding_url(dev_server, 506))
    phone_page.get_by_test_id("qr").locator("svg").wait_for(timeout=15000)
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 375
    box = phone_page.get_by_test_id("qr").bounding_box()
    assert box is not None and box["width"] >= 200  # large enough to scan from another phone
    phone_page.screenshot(path=artifacts / "connect-375px.png", full_page=True)


def test_an_unlink_on_the_phone_is_said_at_once_and_never_as_an_error(
    dev_server: str, page: Any, artifacts: Path
) -> None:
    open_and_scan(page, dev_server, 521, "79005210000")
    expect(page.get_by_test_id("state-text")).to_have_text("WhatsApp подключён", timeout=15000)
    assert httpx.post(f"{dev_server}/_dev/whatsapp/phones/79005210000/logout").status_code == 200
    # Right after linking WhatsApp's 401 is double-checked for a few seconds; the page says so at once.
    said = re.compile("^(Телефон сообщил об отвязке — проверяем…|WhatsApp отвязан на телефоне)$")
    expect(page.get_by_test_id("state-text")).to_have_text(said, timeout=1500)
    expect(page.get_by_test_id("state-detail")).not_to_contain_text("Ничего делать не нужно")
    expect(page.get_by_test_id("state-text")).to_have_text("WhatsApp отвязан на телефоне", timeout=15000)
    expect(page.get_by_test_id("error-text")).to_be_hidden()
    expect(page.get_by_test_id("new-qr")).to_be_visible()
    page.screenshot(path=artifacts / "live-unlinked.png")


def test_freeze_then_uninstall_show_live_and_a_reinstall_brings_a_qr(dev_server: str, page: Any) -> None:
    page.goto(onboarding_url(dev_server, 522))
    page.get_by_test_id("qr").locator("svg").wait_for(timeout=15000)
    for event, words in (
        ("freeze", "Подписка на приложение приостановлена"),
        ("uninstall", "Приложение отключено в YClients"),
    ):
        answer = httpx.post(f"{dev_server}/_dev/yclients/webhook", json={"salon_id": 522, "event": event}, timeout=30)
        assert answer.status_code == 200, answer.text
        expect(page.get_by_test_id("state-text")).to_have_text(words, timeout=10000)
        expect(page.get_by_test_id("error-text")).to_be_hidden()
        expect(page.get_by_test_id("panel-qr")).to_be_hidden()
    onboarding_url(dev_server, 522)  # the salon installs the app again, in another tab
    expect(page.get_by_test_id("qr").locator("svg")).to_have_count(1, timeout=15000)


def test_a_browser_that_opens_an_unknown_path_reads_an_error_page(
    dev_server: str, phone_page: Any, artifacts: Path
) -> None:
    answer = phone_page.goto(dev_server + "/marketplace/no-such-page")
    assert answer is not None and answer.status == 404
    expect(phone_page.get_by_test_id("error-title-ru")).to_have_text("Страница не найдена")
    expect(phone_page.get_by_test_id("error-title-en")).to_have_text("Page not found")
    expect(phone_page.get_by_test_id("error-status")).to_have_text("404")
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 375
    phone_page.screenshot(path=artifacts / "error-404-phone.png", full_page=True)
    assert blocking(run_axe(phone_page, "error-404-phone")) == []


def test_the_landing_page_shows_the_chosen_salons_own_device_and_activation(dev_server: str, page: Any) -> None:
    page.goto(dev_server + "/")
    page.get_by_test_id("salon-id").fill("611")
    page.get_by_test_id("install").click()
    page.frame_locator("[data-testid=marketplace-frame]").locator("[data-testid=qr] svg").wait_for(timeout=15000)
    page.get_by_test_id("scan-phone").fill("79006110000")
    page.get_by_test_id("scan").click()
    expect(page.get_by_test_id("linked")).to_contain_text(
        "✓ Salon 611: WhatsApp +7 900 611-00-00 linked", timeout=15000
    )
    expect(page.get_by_test_id("activation")).to_contain_text("Activation delivered", timeout=30000)
    expect(page.get_by_test_id("calls")).to_contain_text("POST /marketplace/partner/callback → 201")
    # Another salon has nothing of the first one's.
    page.get_by_test_id("salon-id").fill("612")
    expect(page.get_by_test_id("linked")).to_have_text(
        "Salon 612 has not installed the app yet — press “Install in salon”."
    )
    page.get_by_test_id("install").click()
    expect(page.get_by_test_id("linked")).to_have_text(
        "Salon 612: no device linked yet — scan its QR / пока не подключено"
    )
    expect(page.get_by_test_id("activation")).to_contain_text("No activation for salon 612 yet")
    expect(page.get_by_test_id("calls").locator("li")).to_have_count(0)
    page.get_by_test_id("salon-id").fill("611")
    expect(page.get_by_test_id("calls").locator("li")).to_have_count(1)
    times = page.get_by_test_id("calls").inner_text()
    assert not re.search(r"\d{4,}\.\d", times), times  # human times, not the fake's clock
    assert re.search(r"(just now|\d+ s ago|\d+ min ago) · POST", times), times


def test_the_landing_page_fits_a_phone_and_brings_the_salons_screen_into_view(
    dev_server: str, phone_page: Any, artifacts: Path
) -> None:
    phone_page.goto(dev_server + "/")
    phone_page.get_by_test_id("salon-id").fill("613")
    phone_page.get_by_test_id("install").click()
    expect(phone_page.get_by_test_id("marketplace-frame")).to_be_in_viewport(timeout=5000)
    phone_page.frame_locator("[data-testid=marketplace-frame]").locator("[data-testid=qr] svg").wait_for(timeout=15000)
    phone_page.get_by_test_id("scan").click()
    expect(phone_page.get_by_test_id("activation")).to_contain_text("Activation delivered", timeout=30000)
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 375
    phone_page.screenshot(path=artifacts / "landing-phone.png", full_page=True)
