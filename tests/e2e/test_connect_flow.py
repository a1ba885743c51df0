"""The salon's way in, in a real Chromium against a real `actor-admin dev`.

Screenshots of each state land in tests/artifacts/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pytest

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


def decode_qr(png: bytes) -> str:
    zxingcpp = pytest.importorskip("zxingcpp")
    from PIL import Image

    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)).convert("L"))
    assert found, "no QR code found in the screenshot"
    return str(found[0].text)


def test_the_qr_on_the_page_decodes_to_the_payload_whatsapp_issued(dev_server: str, page: Any, artifacts: Path) -> None:
    page.goto(onboarding_url(dev_server, 501))
    qr = page.get_by_test_id("qr")
    qr.locator("svg").wait_for(timeout=15000)
    assert "#token" not in page.url  # the token is wiped from the address bar at once
    page.screenshot(path=artifacts / "connect-qr.png")
    shown = decode_qr(qr.screenshot())
    issued = httpx.get(f"{dev_server}/_dev/whatsapp/qr", params={"salon_id": 501}).json()["qr"]
    assert shown == issued


def test_scanning_with_the_simulated_phone_shows_connected_with_the_number(
    dev_server: str, page: Any, artifacts: Path
) -> None:
    page.goto(onboarding_url(dev_server, 502))
    page.get_by_test_id("qr").locator("svg").wait_for(timeout=15000)
    qr = httpx.get(f"{dev_server}/_dev/whatsapp/qr", params={"salon_id": 502}).json()["qr"]
    assert httpx.post(f"{dev_server}/_dev/whatsapp/scan", json={"qr": qr, "phone": PHONE}).status_code == 200
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


def test_the_connect_page_fits_a_375px_phone_screen(dev_server: str, browser: Any, artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    phone_page = context.new_page()
    try:
        phone_page.goto(onboarding_url(dev_server, 506))
        phone_page.get_by_test_id("qr").locator("svg").wait_for(timeout=15000)
        assert phone_page.evaluate("document.documentElement.scrollWidth") <= 375
        box = phone_page.get_by_test_id("qr").bounding_box()
        assert box is not None and box["width"] >= 200  # large enough to scan from another phone
        phone_page.screenshot(path=artifacts / "connect-375px.png", full_page=True)
    finally:
        context.close()
