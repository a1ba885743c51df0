"""The /status page with 10,000 salons, scripted (Playwright routes): it asks for one page at a time and draws
only that page, so it stays fast however many salons there are. tests/e2e runs it against a real server."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.web._scripted import ARTIFACTS, expect
from tests.web._web_assets import WEB

pytestmark = pytest.mark.browser

ORIGIN = "http://ops.test"
TOTAL = 10_000


def _status(route: Any) -> None:
    body = {
        "node": "n1",
        "version": "0.1.0",
        "uptime_s": 5.0,
        "mode": "serve",
        "dependencies": {"postgres": {"ok": True, "latency_ms": 1.0}, "redis": {"ok": True, "latency_ms": 1.0}},
        "actors": {"total": TOTAL, "by_state": {"connected": TOTAL}, "restarts_total": 0, "mailbox_max_depth": 0},
        "cluster": {"nodes": ["n1"], "owned_here": TOTAL},
        "outbox": {"pending": 0, "oldest_pending_s": None, "failed": 0},
        "websockets": {"open": 0},
    }
    route.fulfill(json=body)


@pytest.fixture
def asked(browser: Any) -> Any:
    """The status page on a scripted server; yields (page, the list queries it made)."""
    queries: list[dict[str, list[str]]] = []

    def handle(route: Any) -> None:
        url = urlsplit(route.request.url)
        if url.path == "/status" and "json" in (route.request.headers.get("accept") or ""):
            _status(route)
        elif url.path == "/status":
            route.fulfill(body=(WEB / "status.html").read_text(encoding="utf-8"), content_type="text/html")
        elif url.path.startswith("/static/"):
            name = url.path.removeprefix("/static/")
            kind = "text/css" if name.endswith(".css") else "text/javascript"
            route.fulfill(body=(WEB / name).read_text(encoding="utf-8"), content_type=kind)
        elif url.path == "/status/companies":
            query = parse_qs(url.query)
            queries.append(query)
            page, per_page = int(query["page"][0]), int(query["per_page"][0])
            first = (page - 1) * per_page + 1
            rows = [
                {
                    "salon_id": i,
                    "title": f"Salon {i}",
                    "integration_status": "active",
                    "state": "connected",
                    "phone": "79000000000",
                    "node": "n1",
                    "restarts": 0,
                    "last_error": None,
                    "since": None,
                }
                for i in range(first, min(TOTAL, first + per_page - 1) + 1)
            ]
            problems = {"failed": 0, "conflict": 0, "logged_out": 0, "activation_failed": 0}
            route.fulfill(
                json={"companies": rows, "page": page, "per_page": per_page, "total": TOTAL, "problems": problems}
            )
        else:
            route.fulfill(status=404, body=json.dumps({"error": {"code": "not_found", "message": "x"}}))

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.route(f"{ORIGIN}/**", handle)
    page.goto(f"{ORIGIN}/status")
    page.get_by_test_id("token-input").fill("admin-token-0123456789")
    page.get_by_test_id("token-save").click()
    yield page, queries
    context.close()


def test_ten_thousand_salons_are_drawn_fifty_at_a_time(asked: Any) -> None:
    page, queries = asked
    expect(page.get_by_test_id("pager-note")).to_have_text("1–50 of 10000")
    expect(page.get_by_test_id("companies").locator("tbody tr")).to_have_count(50)
    assert all(q["per_page"] == ["50"] for q in queries)
    page.get_by_test_id("pager-next").click()
    expect(page.get_by_test_id("pager-note")).to_have_text("51–100 of 10000")
    expect(page.get_by_test_id("salon-link").first).to_have_text("51")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "status-10000-salons.png")


def test_choosing_a_problem_asks_the_server_for_that_problem_from_page_one(asked: Any) -> None:
    page, queries = asked
    page.get_by_test_id("pager-next").click()
    expect(page.get_by_test_id("pager-note")).to_have_text("51–100 of 10000")
    page.get_by_test_id("problem-filter").select_option("activation_failed")
    expect(page.get_by_test_id("pager-note")).to_have_text("1–50 of 10000")
    assert queries[-1]["problem"] == ["activation_failed"] and queries[-1]["page"] == ["1"]
    assert "state" not in queries[-1]
