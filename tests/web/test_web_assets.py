"""Static checks of web/: the budget, CSP compatibility, both languages complete, the server contract.

These read the files only; the page's behaviour in a browser is tested in test_onboarding_page.py.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from tests.web._web_assets import (
    DOCUMENTED_STATES,
    PLACEHOLDER,
    WEB,
    contrast,
    css_rule,
    css_variables,
    elements,
    html_files,
    i18n,
    onboarding_js_outside_dictionary,
)

VENDOR = WEB / "vendor"
QR_ENCODER = json.loads((VENDOR / "manifest.json").read_text(encoding="utf-8"))["lean-qr"]
CONNECT_PAGE = ("onboarding.html", "onboarding.js", "style.css", f"vendor/{QR_ENCODER['file']}")
ASSETS = sorted(p for p in WEB.iterdir() if p.suffix in (".html", ".js", ".css"))
HTML = html_files()


def test_connect_page_and_its_assets_stay_under_100_kib() -> None:
    total = sum((WEB / name).stat().st_size for name in CONNECT_PAGE)
    assert total < 100 * 1024, f"{total} bytes"


def _sha256(name: str) -> str:
    return hashlib.sha256((VENDOR / name).read_bytes()).hexdigest()


def test_the_vendored_qr_encoder_is_the_pinned_release_with_its_licence() -> None:
    # web/README.md#vendored-code says how to check the pin against the npm registry and how to move it.
    assert re.fullmatch(r"\d+\.\d+\.\d+", QR_ENCODER["version"])
    assert QR_ENCODER["file"] == f"lean-qr-{QR_ENCODER['version']}.mjs"  # a new version is a new URL: no stale cache
    assert _sha256(QR_ENCODER["file"]) == QR_ENCODER["sha256"]
    assert _sha256(QR_ENCODER["licence_file"]) == QR_ENCODER["licence_sha256"]
    licence = (VENDOR / QR_ENCODER["licence_file"]).read_text(encoding="utf-8")
    assert licence.startswith("MIT License") and "David Evans" in licence and QR_ENCODER["licence"] == "MIT"
    # Nothing unpinned ships from vendor/.
    assert {p.name for p in VENDOR.iterdir()} == {"manifest.json", QR_ENCODER["file"], QR_ENCODER["licence_file"]}


def test_the_connect_page_loads_the_pinned_encoder() -> None:
    assert f'"/static/vendor/{QR_ENCODER["file"]}"' in onboarding_js_outside_dictionary()


@pytest.mark.parametrize("path", ASSETS, ids=lambda p: p.name)
def test_asset_references_no_external_url(path) -> None:
    # The SVG namespace is a name the page draws the QR in, never fetched.
    text = path.read_text(encoding="utf-8").replace('"http://www.w3.org/2000/svg"', "")
    assert not re.search(r"https?://", text), "CSP default-src 'self': no CDNs, fonts or absolute links"
    # protocol-relative URLs in attributes or CSS url() would also leave the origin
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']//|url\(\s*["']?//""", text)


@pytest.mark.parametrize("path", HTML, ids=lambda p: p.name)
def test_html_has_no_inline_script(path) -> None:
    for el in elements(path):
        if el.tag == "script":
            assert el.attrs.get("src"), "script-src 'self' blocks inline scripts"
            assert not el.text.strip(), "a script with src must have no body"


@pytest.mark.parametrize("path", HTML, ids=lambda p: p.name)
def test_html_has_no_inline_style_or_handler_attributes(path) -> None:
    for el in elements(path):
        assert el.tag != "style", "style-src 'self': styles live in style.css"
        for name, value in el.attrs.items():
            assert name != "style", f"style= on <{el.tag}>"
            assert not name.startswith("on"), f"{name}= handler on <{el.tag}>"
            assert not (value or "").strip().lower().startswith("javascript:"), f"javascript: URL on <{el.tag}>"


@pytest.mark.parametrize("path", HTML, ids=lambda p: p.name)
def test_html_references_only_assets_that_exist(path) -> None:
    for el in elements(path):
        for name in ("src", "href"):
            value = el.attrs.get(name) or ""
            if value.startswith("/static/"):
                assert (WEB / value.removeprefix("/static/")).is_file(), value


@pytest.mark.parametrize("path", HTML, ids=lambda p: p.name)
def test_html_declares_language_charset_and_viewport(path) -> None:
    els = elements(path)
    html = next(el for el in els if el.tag == "html")
    assert html.attrs.get("lang") in ("ru", "en")
    assert any(el.tag == "meta" and el.attrs.get("charset", "").lower() == "utf-8" for el in els)
    assert any(el.tag == "meta" and el.attrs.get("name") == "viewport" for el in els)


@pytest.mark.parametrize("name", ["onboarding.html", "error.html", "salons.html"])
def test_salon_facing_pages_are_russian_first(name) -> None:
    html = next(el for el in elements(WEB / name) if el.tag == "html")
    assert html.attrs["lang"] == "ru"


def test_dictionary_has_the_same_keys_in_russian_and_english() -> None:
    words = i18n()
    assert set(words) == {"ru", "en"}
    assert set(words["ru"]) == set(words["en"])


def test_dictionary_has_no_empty_text() -> None:
    for lang, table in i18n().items():
        empty = [key for key, text in table.items() if not text.strip()]
        assert not empty, f"{lang}: {empty}"


def test_dictionary_placeholders_match_between_languages() -> None:
    words = i18n()
    for key, ru in words["ru"].items():
        assert set(re.findall(r"\{(\w+)\}", ru)) == set(re.findall(r"\{(\w+)\}", words["en"][key])), key


@pytest.mark.parametrize("state", DOCUMENTED_STATES)
def test_every_spec_state_has_title_and_detail_in_both_languages(state) -> None:
    words = i18n()
    for lang in ("ru", "en"):
        assert words[lang].get(f"state.{state}.title"), (lang, state)
        assert words[lang].get(f"state.{state}.detail"), (lang, state)


def test_page_knows_exactly_the_spec_states() -> None:
    source = onboarding_js_outside_dictionary()
    match = re.search(r"var STATES = \[(.*?)\];", source, re.S)
    assert match
    assert re.findall(r'"(\w+)"', match.group(1)) == DOCUMENTED_STATES


def test_every_key_the_page_uses_is_in_the_dictionary() -> None:
    words = i18n()["ru"]
    prefixes = {key.split(".")[0] for key in words}
    source = onboarding_js_outside_dictionary()
    used = {m for m in re.findall(r'"([a-z_]+(?:\.[a-z_0-9]+)+)"', source) if m.split(".")[0] in prefixes}
    html = {el.attrs["data-i18n"] for el in elements(WEB / "onboarding.html") if el.attrs.get("data-i18n")}
    assert used and html
    # A screen's words are named by their prefix ("view.offline"): its .title and .detail must both exist.
    screens = {key for key in used if f"{key}.title" in words and f"{key}.detail" in words}
    assert sorted((used | html) - set(words) - screens) == []


def test_connect_page_has_the_stable_test_ids() -> None:
    ids = {el.attrs.get("data-testid") for el in elements(WEB / "onboarding.html")}
    wanted = {
        "state-text",
        "qr",
        "qr-countdown",
        "phone-display",
        "pairing-input",
        "pairing-submit",
        "pairing-code",
        "pairing-copy",
        "pairing-countdown",
        "new-qr",
        "lang-toggle",
        "connection-banner",
        "mode-toggle",
        "error-text",
    }
    assert wanted <= ids, wanted - ids


def test_connect_page_test_ids_are_unique() -> None:
    ids = [el.attrs["data-testid"] for el in elements(WEB / "onboarding.html") if el.attrs.get("data-testid")]
    assert len(ids) == len(set(ids))


def test_connect_page_status_is_announced_politely() -> None:
    live = [el for el in elements(WEB / "onboarding.html") if el.attrs.get("aria-live")]
    assert [el.attrs["aria-live"] for el in live] == ["polite"]


def test_phone_input_is_labelled_and_typed_for_phones() -> None:
    els = elements(WEB / "onboarding.html")
    field = next(el for el in els if el.attrs.get("data-testid") == "pairing-input")
    assert field.attrs.get("type") == "tel"
    assert field.attrs.get("autocomplete") == "tel"
    assert any(el.tag == "label" and el.attrs.get("for") == field.attrs["id"] for el in els)


def test_connect_page_carries_no_template_placeholders() -> None:
    # served as a plain file: everything it needs comes from the URL fragment and the websocket
    for name in ("onboarding.html", "onboarding.js", "landing.html", "landing.js", "status.html", "status.js"):
        assert not PLACEHOLDER.search((WEB / name).read_text(encoding="utf-8")), name


@pytest.mark.parametrize(
    ("name", "placeholders"),
    [
        ("error.html", {"title_ru", "message_ru", "title_en", "message_en", "status"}),
        ("salons.html", {"items"}),
    ],
)
def test_templates_use_exactly_the_documented_placeholders(name, placeholders) -> None:
    text = (WEB / name).read_text(encoding="utf-8")
    assert set(PLACEHOLDER.findall(text)) == placeholders
    readme = (WEB / "README.md").read_text(encoding="utf-8")
    for placeholder in placeholders:
        assert "{{" + placeholder + "}}" in readme, placeholder


@pytest.mark.parametrize("name", ["error.html", "salons.html"])
def test_template_placeholders_sit_in_text_not_attributes(name) -> None:
    # the server HTML-escapes values; escaping is only enough in text positions
    for el in elements(WEB / name):
        for value in el.attrs.values():
            assert not PLACEHOLDER.search(value or ""), (el.tag, value)


def test_readme_documents_every_connect_page_test_id() -> None:
    readme = (WEB / "README.md").read_text(encoding="utf-8")
    for el in elements(WEB / "onboarding.html"):
        if el.attrs.get("data-testid"):
            assert f"`{el.attrs['data-testid']}`" in readme, el.attrs["data-testid"]


@pytest.mark.parametrize(
    ("foreground", "background"),
    [
        ("fg", "card"),
        ("fg", "bg"),
        ("muted", "card"),
        ("muted", "bg"),
        ("on-accent", "accent"),
        ("on-accent", "accent-hover"),
        ("accent", "card"),
        ("fg", "accent-soft"),
        ("danger", "card"),
        ("danger", "danger-soft"),
        ("warn", "warn-soft"),
        ("focus", "card"),
        ("muted", "accent-soft"),
        ("fg", "offline"),
        ("muted", "offline"),
    ],
)
def test_colour_pairs_meet_wcag_aa(foreground, background) -> None:
    colours = css_variables()
    assert contrast(colours[foreground], colours[background]) >= 4.5


@pytest.mark.parametrize("selector", [".btn", ".lang", ".link-btn", 'input[type="tel"]'])
def test_tap_targets_are_at_least_44px(selector) -> None:
    height = re.search(r"min-height:\s*(\d+)px", css_rule(selector))
    assert height and int(height.group(1)) >= 44


def test_focus_is_visible() -> None:
    assert "outline" in css_rule(":focus-visible")


def test_qr_fits_its_container_and_stays_sharp() -> None:
    rule = css_rule(".qr svg")
    assert "max-width: 100%" in rule  # the page picks the size (whole pixels a module); never wider than the box
    assert "crispEdges" in rule
    assert "max-width: 320px" in css_rule(".qr")
