"""HTML pages for a salon's browser: the files of ``web/`` with their ``{{placeholders}}`` filled in.

Pages are Russian first with English below (docs/http-api.md#conventions). Every value is HTML-escaped; the one
exception, the salons list, is built here from escaped parts. The headers let the pages live inside
the YClients marketplace iframe (CSP ``frame-ancestors``, never ``X-Frame-Options``) and keep
onboarding tokens out of caches and ``Referer`` headers.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Iterable, Mapping
from typing import Final, final

import attrs
from quart import Response

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
