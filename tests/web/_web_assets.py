"""Helpers that read web/ the way a browser would see it: parsed HTML, the i18n dictionary, CSS variables."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import attrs

WEB = Path(__file__).resolve().parents[2] / "web"

# docs/websocket.md#states: the states a `state` frame can carry.
DOCUMENTED_STATES = (
    "idle starting qr pairing_code connecting connected reconnecting logged_out conflict failed frozen uninstalled"
).split()

PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@attrs.frozen
class Element:
    """One start tag: its name, attributes and (for <script>/<style>) the text inside."""

    tag: str
    attrs: dict[str, str | None]
    text: str = ""


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open_raw: tuple[str, dict[str, str | None]] | None = None
        self._raw_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._open_raw = (tag, dict(attrs))
            self._raw_text = []
        else:
            self.elements.append(Element(tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        if self._open_raw is not None:
            self._raw_text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if self._open_raw is not None and tag == self._open_raw[0]:
            self.elements.append(Element(tag, self._open_raw[1], "".join(self._raw_text)))
            self._open_raw = None


def html_files() -> list[Path]:
    return sorted(WEB.glob("*.html"))


def elements(path: Path) -> list[Element]:
    parser = _Collector()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser.elements


def i18n() -> dict[str, dict[str, str]]:
    """The connect page's dictionary: the JSON literal between the I18N markers in onboarding.js."""
    source = (WEB / "onboarding.js").read_text(encoding="utf-8")
    match = re.search(r"/\*I18N-BEGIN\*/(.*?)/\*I18N-END\*/", source, re.S)
    assert match, "onboarding.js must keep its dictionary between /*I18N-BEGIN*/ and /*I18N-END*/"
    data: dict[str, dict[str, str]] = json.loads(match.group(1))
    return data


def onboarding_js_outside_dictionary() -> str:
    source = (WEB / "onboarding.js").read_text(encoding="utf-8")
    return re.sub(r"/\*I18N-BEGIN\*/.*?/\*I18N-END\*/", "", source, flags=re.S)


def css_variables() -> dict[str, str]:
    css = (WEB / "style.css").read_text(encoding="utf-8")
    root = re.search(r":root\s*\{(.*?)\}", css, re.S)
    assert root, "style.css must declare its colours as :root custom properties"
    return dict(re.findall(r"--([\w-]+)\s*:\s*([^;]+);", root.group(1)))


def css_rule(selector: str) -> str:
    """The declarations of the first rule whose selector list contains exactly ``selector``."""
    css = (WEB / "style.css").read_text(encoding="utf-8")
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        if selector in [s.strip() for s in selectors.split(",")]:
            return body
    raise AssertionError(f"no CSS rule for {selector}")


def contrast(foreground: str, background: str) -> float:
    """WCAG 2.x contrast ratio of two #rrggbb colours."""

    def luminance(colour: str) -> float:
        colour = colour.strip().lstrip("#")
        if len(colour) == 3:
            colour = "".join(c * 2 for c in colour)
        channels = [int(colour[i : i + 2], 16) / 255 for i in (0, 2, 4)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)
