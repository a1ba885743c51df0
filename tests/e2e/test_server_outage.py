"""The connect page while the real server is stopped and started again (its own `actor-admin dev`, so the
restart disturbs no other test): greyed with "no connection to the server", then back within seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import DevServer
from tests.e2e.test_connect_flow import onboarding_url
from tests.web._scripted import expect

pytestmark = pytest.mark.browser


def test_a_stopped_server_greys_the_page_and_its_return_restores_it_within_seconds(
    dev: DevServer, phone_page: Any, artifacts: Path
) -> None:
    page = phone_page
    page.goto(onboarding_url(dev.base, 801))
    expect(page.get_by_test_id("qr").locator("svg")).to_have_count(1, timeout=15000)
    dev.stop()
    expect(page.get_by_test_id("state-text")).to_have_text("Нет связи с сервером", timeout=5000)
    expect(page.get_by_test_id("panel-qr")).to_be_hidden()
    page.screenshot(path=artifacts / "live-server-gone.png")
    dev.start()  # returns once /healthz answers
    # The poll every 3 s notices the server; the websocket follows at once (not after a 30 s back-off).
    expect(page.get_by_test_id("qr").locator("svg")).to_be_visible(timeout=8000)
    expect(page.get_by_test_id("state-text")).to_have_text("Отсканируйте QR-код телефоном")
    expect(page.get_by_test_id("app")).to_have_class("card")
