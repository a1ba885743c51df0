"""A browser that meets an error on any route reads a page (Russian, English below); API clients keep JSON."""

from __future__ import annotations

import pytest

from tests.api.conftest import TestNode

pytestmark = pytest.mark.integration

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.mark.parametrize(
    ("method", "path", "status", "title_ru", "title_en"),
    [
        ("GET", "/no/such/page", 404, "Страница не найдена", "Page not found"),
        ("GET", "/webhook/yclients", 405, "Эту страницу так не открыть", "This page cannot be opened this way"),
        ("GET", "/admin/companies", 401, "Нужна действующая ссылка", "A valid link is needed"),
        ("GET", "/marketplace/api/status", 401, "Нужна действующая ссылка", "A valid link is needed"),
        ("GET", "/_dev/whatsapp/qr?salon_id=abc", 422, "Запрос не выполнен", "The request could not be done"),
    ],
)
async def test_a_browser_gets_an_error_page_in_both_languages(
    node: TestNode, method: str, path: str, status: int, title_ru: str, title_en: str
) -> None:
    answer = await node.http.request(method, path, headers=BROWSER)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    page = answer.text
    assert f'<h1 data-testid="error-title-ru">{title_ru}</h1>' in page
    assert f'<h2 data-testid="error-title-en">{title_en}</h2>' in page
    assert f'<span data-testid="error-status">{status}</span>' in page
    assert "frame-ancestors 'self'" in answer.headers["content-security-policy"]
    assert "{{" not in page


@pytest.mark.parametrize("accept", [None, "application/json", "*/*"])
async def test_api_clients_keep_the_json_error(node: TestNode, accept: str | None) -> None:
    headers = {"Accept": accept} if accept else {}
    answer = await node.http.get("/no/such/page", headers=headers)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == "not_found"


async def test_json_that_is_not_an_error_stays_json_for_a_browser(node: TestNode) -> None:
    # /readyz names its failing parts for operators; a browser sees them as they are
    answer = await node.http.get("/readyz", headers=BROWSER)
    assert answer.headers["content-type"] == "application/json"
    assert "ready" in answer.json()


async def test_the_admin_401_page_keeps_its_authentication_challenge(node: TestNode) -> None:
    answer = await node.http.get("/admin/companies", headers=BROWSER)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == 'Bearer realm="admin"'
