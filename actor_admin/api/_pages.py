"""HTML pages for a salon's browser: the files of ``web/`` with their ``{{placeholders}}`` filled in.

Pages are Russian first with English below (docs/http-api.md#conventions). Every value is HTML-escaped; the one
exception, the salons list, is built here from escaped parts. The headers let the pages live inside
the YClients marketplace iframe (CSP ``frame-ancestors``, never ``X-Frame-Options``) and keep
onboarding tokens out of caches and ``Referer`` headers.

A browser that meets an error on any route (an unknown path, a wrong method, a refused request) gets
``web/error.html`` for it, Russian and English; API clients, which ask for JSON (or anything), keep
the JSON error shape (docs/http-api.md#conventions).
"""

from __future__ import annotations

import functools
import html
import json
import re
from collections.abc import Iterable, Mapping
from typing import Final, final

import attrs
from quart import Response, request

from actor_admin._resources import web_dir
from actor_admin.config import Settings

from ._http import content_security_policy

_PLACEHOLDER: Final = re.compile(r"\{\{([a-z_]+)\}\}")
# A CSP source expression we are willing to echo: scheme://host[:port] with an optional leading
# "*." label. Anything else (a stray ";" or space from a mistyped setting) would inject directives.
_ORIGIN_SOURCE: Final = re.compile(r"^https?://(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?$")


@final
@attrs.frozen
class PageText:
    """The four texts of ``web/error.html``."""

    title_ru: str
    message_ru: str
    title_en: str
    message_en: str


NO_SALON: Final = PageText(
    "Не указан салон",
    "Откройте приложение из маркетплейса YClients.",
    "No salon given",
    "Open the app from the YClients marketplace.",
)
BAD_SALON: Final = PageText(
    "Неверный номер салона",
    "Ссылка повреждена. Откройте приложение заново из маркетплейса YClients.",
    "Invalid salon number",
    "The link is damaged. Open the app again from the YClients marketplace.",
)
NOT_VERIFIED: Final = PageText(
    "Ссылка не прошла проверку",
    "Откройте приложение заново из YClients.",
    "The link failed verification",
    "Open the app again from YClients.",
)
UNAVAILABLE: Final = PageText(
    "Сервис временно недоступен",
    "Попробуйте открыть приложение ещё раз через минуту.",
    "The service is temporarily unavailable",
    "Try opening the app again in a minute.",
)

# What a browser that lands on an error of any route reads (API clients keep the JSON). By status; a
# status without its own words gets its class's (4xx, 5xx).
BROWSER_ERRORS: Final[Mapping[int, PageText]] = {
    400: PageText(
        "Неверный запрос",
        "Адрес или данные запроса повреждены. Откройте приложение заново из YClients.",
        "Bad request",
        "The address or the request is damaged. Open the app again from YClients.",
    ),
    401: PageText(
        "Нужна действующая ссылка",
        "Эта страница открывается только по ссылке из YClients. Откройте приложение заново.",
        "A valid link is needed",
        "This page opens only through a link from YClients. Open the app again.",
    ),
    403: PageText(
        "Доступ запрещён",
        "У этой ссылки нет доступа к странице. Откройте приложение заново из YClients.",
        "Access denied",
        "This link has no access to the page. Open the app again from YClients.",
    ),
    404: PageText(
        "Страница не найдена",
        "Проверьте адрес или откройте приложение заново из маркетплейса YClients.",
        "Page not found",
        "Check the address, or open the app again from the YClients marketplace.",
    ),
    405: PageText(
        "Эту страницу так не открыть",
        "Этот адрес служит для обмена данными, а не для просмотра. Откройте приложение из YClients.",
        "This page cannot be opened this way",
        "This address exchanges data; it is not a page to view. Open the app from YClients.",
    ),
    413: PageText(
        "Слишком большой запрос",
        "Запрос больше, чем мы принимаем. Обновите страницу и попробуйте ещё раз.",
        "Request too large",
        "The request is larger than we accept. Reload the page and try again.",
    ),
    429: PageText(
        "Слишком много запросов",
        "Подождите минуту и попробуйте снова.",
        "Too many requests",
        "Wait a minute and try again.",
    ),
    499: PageText(
        "Запрос не выполнен",
        "Попробуйте ещё раз. Если не получается — откройте приложение заново из YClients.",
        "The request could not be done",
        "Try again. If it does not work, open the app again from YClients.",
    ),
    500: PageText(
        "Что-то пошло не так на нашей стороне",
        "Мы уже записали ошибку. Попробуйте ещё раз через минуту.",
        "Something went wrong on our side",
        "The error has been logged. Try again in a minute.",
    ),
    503: UNAVAILABLE,
}


@functools.cache
def _template(name: str) -> str:
    return (web_dir() / name).read_text(encoding="utf-8")


def render(name: str, values: Mapping[str, str], *, raw: Iterable[str] = ()) -> str:
    """``web/<name>`` with every ``{{key}}`` replaced by the escaped value (``raw`` keys unescaped).

    A placeholder without a value becomes empty, so no ``{{`` ever reaches a browser.
    """
    trusted = set(raw)

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        value = values.get(key, "")
        return value if key in trusted else html.escape(value, quote=True)

    return _PLACEHOLDER.sub(fill, _template(name))


def prefers_html() -> bool:
    """Whether the current request comes from a browser that wants a page rather than JSON."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def browser_error_text(status: int) -> PageText:
    if status in BROWSER_ERRORS:
        return BROWSER_ERRORS[status]
    return BROWSER_ERRORS[503] if status in (502, 504) else BROWSER_ERRORS[499 if status < 500 else 500]


async def error_page_for_browser(settings: Settings, response: Response) -> Response:
    """``response`` itself, or — when it is our JSON error shape and a browser asked for a page — the
    error page with the same status. Other JSON (``/readyz`` with its failing parts) stays as it is."""
    if response.status_code < 400 or response.mimetype != "application/json" or not prefers_html():
        return response
    try:
        body = json.loads(await response.get_data(as_text=True))
    except ValueError:
        return response
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return response
    page = error_page(settings, response.status_code, browser_error_text(response.status_code))
    for name in ("Retry-After", "WWW-Authenticate", "Allow"):
        if name in response.headers:
            page.headers[name] = response.headers[name]
    page.headers["Vary"] = "Accept"
    return page


def frame_ancestors(settings: Settings) -> str:
    """The CSP ``frame-ancestors`` sources after ``'self'``: the allowed origins but our own."""
    own = settings.public_url.rstrip("/").lower()
    sources = [o for o in settings.allowed_origins if o.lower() != own and _ORIGIN_SOURCE.match(o)]
    return " ".join(dict.fromkeys(sources))


def page_headers(settings: Settings) -> dict[str, str]:
    """Headers of every salon-facing page: framable by YClients, never cached, no Referer."""
    return {
        "Content-Security-Policy": content_security_policy(frame_ancestors(settings)),
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def html_response(settings: Settings, body: str, status: int = 200) -> Response:
    return Response(body, status=status, content_type="text/html; charset=utf-8", headers=page_headers(settings))


def error_page(settings: Settings, status: int, text: PageText) -> Response:
    """``web/error.html`` for ``status`` with ``text``."""
    values = attrs.asdict(text) | {"status": str(status)}
    return html_response(settings, render("error.html", values), status)


def file_page(settings: Settings, name: str) -> Response:
    """A page of ``web/`` served as it is (the connect page, the dev landing page)."""
    return html_response(settings, _template(name))


def salons_page(settings: Settings, links: Iterable[tuple[int, str | None, str]]) -> Response:
    """``web/salons.html`` listing one onboarding link per ``(salon_id, title, url)``."""
    items = []
    for salon_id, title, url in links:
        label = f"Салон «{title}» · № {salon_id}" if title else f"Салон № {salon_id}"
        items.append(f'<li><a href="{html.escape(url, quote=True)}">{html.escape(label, quote=True)}</a></li>')
    return html_response(settings, render("salons.html", {"items": "".join(items)}, raw=("items",)))
