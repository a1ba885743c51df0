"""No input produces a 5xx (docs/http-api.md#conventions): random methods, paths, query strings, headers and bodies sent
over real HTTP to every route of the app, on one real node.

Hypothesis runs in a worker thread with a plain blocking HTTP client, so the node keeps serving in
the test's trio loop while examples are drawn — one node for all examples instead of one each.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import quote

import attrs
import httpx
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actor_admin.api import create_app
from actor_admin.api._tokens import mint_onboarding_token

from .conftest import ADMIN_TOKEN, JWT_SECRET, TestNode

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
BODY_METHODS = ("POST", "PUT", "PATCH")
CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")
# The doubles' fault injectors make later answers fail on purpose (a banned number, an outdated
# client, a stalled link, YClients answering 503): excluded so a 5xx they cause is not blamed on
# the route that met it.
FAULT_INJECTORS = ("/outdate", "/ban", "/stall", "/faults")
FOCUS = ("/auth/", "/marketplace/", "/webhook/", "/admin/")
QUERY_NAMES = [
    "salon_id",
    "salon_ids[]",
    "salon_ids[0]",
    "user_data",
    "user_data_sign",
    "token",
    "state",
    "page",
    "direction",
    "limit",
    "path",
    "encoding",
    "multi",
    "lang",
    "x",
]
BODY_KEYS = [
    "phone",
    "qr",
    "code",
    "salon_id",
    "event",
    "partner_token",
    "application_id",
    "to",
    "text",
    "idempotency_key",
    "token",
    "from",
    "id",
    "seconds",
    "enabled",
    "type",
]

printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
# What h11 lets a client send as a header value: visible ASCII, no surrounding spaces.
header_text = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)
anything = st.text(max_size=40)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), anything)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(anything, inner, max_size=4), max_leaves=12
)
# Bodies valid in shape but pathological in content (docs/http-api.md#conventions): what json.loads
# crashes on (deep nesting), turns into something the handlers cannot use (1e400 → inf, NaN, lone
# surrogates, a later duplicate key silently winning) or refuses only past Python's 4,300-digit limit.
PATHOLOGICAL_VALUES = [
    b"[" * 3000 + b"]" * 3000,
    b'{"a":' * 1000 + b"1" + b"}" * 1000,
    b"1e400",
    b"-1e400",
    b"9" * 5000,
    b"NaN",
    b"Infinity",
    b'"\\ud800"',
    b'"\\udfff x"',
]


@st.composite
def pathological_bodies(draw: st.DrawFn) -> bytes:
    key = draw(st.sampled_from(BODY_KEYS)).encode()
    value = draw(st.sampled_from(PATHOLOGICAL_VALUES))
    body = b'{"' + key + b'": ' + value + b"}"
    encoding = draw(st.sampled_from(["plain", "duplicate", "utf-16", "bom", "invalid-utf8", "bare"]))
    if encoding == "duplicate":
        return b'{"' + key + b'": 1, "' + key + b'": 2}'
    if encoding == "utf-16":
        return body.decode("utf-8").encode("utf-16")
    if encoding == "bom":
        return b"\xef\xbb\xbf" + body
    if encoding == "invalid-utf8":
        return b'{"' + key + b'": "\xff\xed\xa0\x80"}'
    return value if encoding == "bare" else body


segment = st.one_of(
    st.integers(-5, 10**20).map(str), st.sampled_from(["1", "101", "79001234567", "%00", ".."]), printable
)


def route_list(node: TestNode) -> list[tuple[str, list[str]]]:
    # A copy of the services: building a second app must not rewire the running node's record.
    app = create_app(attrs.evolve(node.services))
    rules = []
    for rule in app.url_map.iter_rules():
        if any(marker in rule.rule for marker in FAULT_INJECTORS):
            continue
        rules.append((rule.rule, sorted(rule.methods or ["GET"])))
    return sorted(rules)


ANY_BODY = st.one_of(
    st.none(),
    st.binary(max_size=512),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(BODY_KEYS), json_values, max_size=5).map(lambda v: json.dumps(v).encode()),
    pathological_bodies(),
)


@st.composite
def requests(
    draw: st.DrawFn, rule: str, methods: list[str], bodies: st.SearchStrategy[bytes | None] = ANY_BODY
) -> dict[str, Any]:

    def fill(match: re.Match[str]) -> str:
        value = draw(segment)
        return quote(value, safe="/" if match.group(1) == "path" else "")

    path = CONVERTER.sub(fill, rule)
    # Mostly the route's own methods, so most examples get past routing into the handler.
    method = draw(st.sampled_from(methods) if draw(st.integers(0, 9)) else st.sampled_from(METHODS))
    query = draw(st.lists(st.tuples(st.sampled_from(QUERY_NAMES) | printable, anything), max_size=4))
    salon_id = draw(st.integers(1, 10**6))
    authorization = draw(
        st.sampled_from([None, f"Bearer {ADMIN_TOKEN}", "onboarding", "onboarding", "Bearer not-a-jwt", "Basic YTpi"])
        if draw(st.integers(0, 4))
        else header_text
    )
    if authorization == "onboarding":
        authorization = f"Bearer {mint_onboarding_token(JWT_SECRET, salon_id, now=time.time())}"
    headers = {
        "Content-Type": draw(
            st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]) | header_text
        ),
        "Accept": draw(st.sampled_from(["application/json", "text/html", "*/*"]) | header_text),
    }
    if authorization is not None:
        headers["Authorization"] = authorization
    body = draw(bodies)
    return {"method": method, "url": path, "params": query, "headers": headers, "content": body}


def examples_for(rule: str) -> int:
    """The salon- and YClients-facing routes get most of the budget; the doubles a few each."""
    return 8 if rule.startswith(FOCUS) else 2


def check_rule(
    base_url: str,
    rule: str,
    methods: list[str],
    seen: list[str],
    bodies: st.SearchStrategy[bytes | None] = ANY_BODY,
    examples: int | None = None,
) -> None:
    @settings(
        max_examples=examples if examples is not None else examples_for(rule),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(requests(rule, methods, bodies))
    def no_5xx(request: dict[str, Any]) -> None:
        with httpx.Client(base_url=base_url, timeout=20) as client:
            try:
                response = client.request(**request)
            except httpx.InvalidURL:
                return  # httpx will not send it; nothing reached the server
        seen.append(rule)
        assert response.status_code < 500, (request, response.status_code, response.text[:300])

    no_5xx()


def check_all(base_url: str, rules: list[tuple[str, list[str]]]) -> list[str]:
    seen: list[str] = []
    for rule, methods in rules:
        check_rule(base_url, rule, methods, seen)
    return seen


async def test_no_request_to_any_route_gets_a_5xx(node: TestNode) -> None:
    rules = route_list(node)
    assert any(rule == "/auth/yclients/redirect" for rule, _ in rules)

    seen = await trio.to_thread.run_sync(check_all, node.base_url, rules)

    assert set(seen) == {rule for rule, _ in rules}  # every route was exercised
    assert len(seen) >= 150


def check_bodies(base_url: str, rules: list[tuple[str, list[str]]]) -> list[str]:
    seen: list[str] = []
    for rule, methods in rules:
        check_rule(base_url, rule, methods, seen, pathological_bodies(), examples=6)
    return seen


async def test_no_pathological_json_body_gets_a_5xx(node: TestNode) -> None:
    # Every route that takes a body, with only the pathological classes (the mix above meets them rarely).
    rules = [(rule, [m for m in methods if m in BODY_METHODS]) for rule, methods in route_list(node)]
    rules = [(rule, methods) for rule, methods in rules if methods]
    assert any(rule == "/webhook/yclients" for rule, _ in rules)

    seen = await trio.to_thread.run_sync(check_bodies, node.base_url, rules)

    assert set(seen) == {rule for rule, _ in rules}
