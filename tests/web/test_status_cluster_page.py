"""The operators' status page (web/status.html + status.js) in a real Chromium: the cluster's nodes
table, rendered from a /status answer served to the page (the salons' owner column is filled from
/status/companies: tests/api/test_status_cluster.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.web._web_assets import WEB

pytestmark = pytest.mark.browser

ORIGIN = "http://status.test"
STATUS = {
    "node": "node-a", "version": "1.2.3", "uptime_s": 12.0, "mode": "serve",
    "dependencies": {"postgres": {"ok": True, "latency_ms": 1.0, "schema_version": "002_cluster"},
                     "redis": {"ok": True, "latency_ms": 0.5}},
    "actors": {"total": 1, "by_state": {"connected": 1}, "restarts_total": 0, "mailbox_max_depth": 0},
    "cluster": {"nodes": [
        {"id": "node-a", "version": "1.2.3", "heartbeat_age_s": 0.4, "owned": 1, "draining": False},
        {"id": "node-b", "version": "1.2.2", "heartbeat_age_s": 31.0, "owned": 2, "draining": True},
    ], "owned_here": 1},
    "outbox": {"pending": 0, "oldest_pending_s": None, "failed": 0},
    "websockets": {"open": 0},
    "companies": [
        {"salon_id": 1, "state": "connected", "phone": "79000000001", "node": "node-a", "restarts": 0,
         "last_error": None, "since": "2025-01-01T00:00:00Z"},
        {"salon_id": 2, "state": "disconnected", "phone": None, "node": "node-b", "restarts": 0,
         "last_error": None, "since": "2025-01-01T00:00:00Z"},
    ],
}


def _route(route: Any) -> None:
    path = route.request.url.removeprefix(ORIGIN).split("?")[0]
    if path == "/status" and "text/html" in (route.request.headers.get("accept") or ""):
        route.fulfill(body=(WEB / "status.html").read_text(encoding="utf-8"), content_type="text/html; charset=utf-8")
    elif path == "/status":
        route.fulfill(body=json.dumps(STATUS), content_type="application/json")
    elif path.startswith("/static/") and (WEB / path.removeprefix("/static/")).is_file():
        file = WEB / path.removeprefix("/static/")
        kind = "text/css" if file.suffix == ".css" else "text/javascript"
        route.fulfill(body=file.read_text(encoding="utf-8"), content_type=kind)
    else:
        route.fulfill(status=404, body="not found")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    errors: list[str] = []
    context = browser.new_context()
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.route(f"{ORIGIN}/**", _route)
    yield page
    context.close()
    assert errors == [], errors


def test_status_page_lists_every_node_with_age_owned_and_draining_and_flags_a_stale_one(page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(f"{ORIGIN}/status")
    rows = page.locator("[data-testid=nodes] tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("node-a (this node)")
    expect(rows.nth(1)).to_contain_text("1.2.2")
    expect(rows.nth(1)).to_contain_text("31.0 s")
    expect(rows.nth(1)).to_contain_text("draining")
    expect(rows.nth(1).locator("td").nth(2)).to_have_class("num bad")
    expect(rows.nth(0).locator("td").nth(2)).to_have_class("num")
