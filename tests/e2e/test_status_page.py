"""The supervisor's /status page in a real Chromium against a real `actor-admin dev`: from "which salons have a
problem" to "why is this one not connected", with axe-core and the keyboard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import DevServer
from tests.web._axe import blocking, run_axe
from tests.web._scripted import SIZES, expect

pytestmark = pytest.mark.browser


def install(base: str, salon_id: int) -> str:
    """The salon installs the app; returns its onboarding token."""
    location = httpx.get(httpx.get(f"{base}/_dev/yclients/install", params={"salon_id": salon_id}).headers["location"])
    return location.headers["location"].split("#token=", 1)[1]


def link(base: str, salon_id: int, phone: str) -> None:
    token = install(base, salon_id)
    answer = httpx.post(f"{base}/marketplace/api/qr", json={}, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    scanned = httpx.post(f"{base}/_dev/whatsapp/scan", json={"qr": answer.json()["qr"], "phone": phone})
    assert scanned.status_code == 200, scanned.text


@pytest.fixture
def status_page(browser: Any, dev: DevServer) -> Any:
    context = browser.new_context(viewport=SIZES["desktop"])
    page = context.new_page()
    page.goto(dev.base + "/status")
    page.get_by_test_id("token-input").fill(dev.setting("ADMIN_TOKEN"))
    page.get_by_test_id("token-save").click()
    expect(page.get_by_test_id("updated")).not_to_contain_text("aggregates only")
    yield page
    context.close()


def test_a_supervisor_finds_the_unlinked_salon_and_reads_why(dev: DevServer, status_page: Any, artifacts: Path) -> None:
    page = status_page
    link(dev.base, 701, "79007010000")
    link(dev.base, 702, "79007020000")
    install(dev.base, 703)
    assert httpx.post(f"{dev.base}/_dev/whatsapp/phones/79007010000/logout").status_code == 200
    page.get_by_test_id("problem-filter").select_option("logged_out")
    rows = page.get_by_test_id("companies").locator("tbody tr")
    expect(rows).to_have_count(1, timeout=20_000)  # the unlink is final once WhatsApp confirms it (≤ ~6 s)
    expect(rows.first).to_have_attribute("data-state", "logged_out")
    expect(page.get_by_test_id("salon-link")).to_have_text("701")
    page.get_by_test_id("salon-link").click()
    history = page.get_by_test_id("history-list").locator("li")
    expect(page.get_by_test_id("history-title")).to_have_text("Salon 701 · Салон красоты №701")
    expect(history.first).to_contain_text("Logged out: the device is unlinked")
    expect(history.first.locator("time")).to_have_text(_recent())
    kinds = history.evaluate_all("items => items.map(li => li.dataset.type)")
    assert kinds.index("logged_out") < kinds.index("connected") < kinds.index("paired")  # newest first
    assert "registration_started" in kinds
    for size, viewport in SIZES.items():
        page.set_viewport_size(viewport)
        page.screenshot(path=artifacts / f"status-history-{size}.png", full_page=True)
        assert blocking(run_axe(page, f"status-history-{size}")) == []


def test_the_state_filter_and_the_keyboard_reach_a_salons_history(dev: DevServer, status_page: Any) -> None:
    page = status_page
    link(dev.base, 711, "79007110000")
    page.get_by_test_id("state-filter").select_option("connected")
    expect(page.get_by_test_id("salon-link").filter(has_text="711")).to_have_count(1, timeout=15_000)
    expect(page.get_by_test_id("problem-filter")).to_have_value("")
    for state in (
        page.get_by_test_id("companies").locator("tbody tr").evaluate_all("rs => rs.map(r => r.dataset.state)")
    ):
        assert state == "connected"
    link_711 = page.get_by_test_id("salon-link").filter(has_text="711")
    link_711.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("history-title")).to_be_focused()
    expect(page.get_by_test_id("history-title")).to_contain_text("Salon 711")
    expect(page.get_by_test_id("history-list").locator("li").first.locator("time")).to_have_text(_recent())


def _recent() -> Any:
    import re

    return re.compile(r"^(just now|\d+ s ago)$")
