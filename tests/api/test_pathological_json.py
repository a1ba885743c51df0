"""Bodies valid in shape but pathological in content (docs/http-api.md#conventions): deep nesting, numbers
beyond a double or Python's digit limit, other encodings, lone surrogates, NaN/Infinity and duplicate
keys each get their documented 400 code on every route that reads a JSON body — the node's, the
admin API and the doubles' control APIs — never a 500. Over real HTTP against a real node."""

from __future__ import annotations

from typing import Any

import pytest

from actor_admin.json_types import MAX_DEPTH, MAX_NUMBER_DIGITS

from .conftest import ADMIN_TOKEN, TestNode

#: (name, body, code): each a class of input ``json.loads`` accepts or crashes on.
PATHOLOGICAL: list[tuple[str, bytes, str]] = [
    ("deep_array", b"[" * 5000 + b"]" * 5000, "too_deep"),
    ("deep_object", b'{"salon_id":' * 3000 + b"1" + b"}" * 3000, "too_deep"),
    ("just_too_deep", b'{"salon_id":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}", "too_deep"),
    ("float_overflow", b'{"salon_id": 1e400}', "number_out_of_range"),
    ("negative_overflow", b'{"salon_id": -1e400, "event": "x"}', "number_out_of_range"),
    ("int_past_python_limit", b'{"salon_id": ' + b"9" * 5000 + b"}", "number_out_of_range"),
    ("int_too_long", b'{"salon_id": ' + b"1" * (MAX_NUMBER_DIGITS + 1) + b"}", "number_out_of_range"),
    ("invalid_utf8", b'{"event": "\xff\xfe"}', "malformed_json"),
    ("encoded_surrogate", b'{"event": "\xed\xa0\x80"}', "malformed_json"),
    ("utf16_with_bom", '{"salon_id": 1}'.encode("utf-16"), "malformed_json"),
    ("utf8_bom", b'\xef\xbb\xbf{"salon_id": 1}', "malformed_json"),
    ("lone_surrogate_value", b'{"partner_token": "\\ud800", "text": "\\udfff"}', "malformed_json"),
    ("lone_surrogate_key", b'{"\\ud800": 1}', "malformed_json"),
    ("nan", b'{"salon_id": NaN}', "malformed_json"),
    ("infinity", b'{"salon_id": Infinity, "to": -Infinity}', "malformed_json"),
    ("duplicate_key", b'{"salon_id": 1, "salon_id": 2}', "duplicate_key"),
]

#: A route of each face that reads a JSON body: (path, headers).
ROUTES: list[tuple[str, dict[str, str]]] = [
    ("/webhook/yclients", {}),
    ("/admin/companies/1/messages", {"Authorization": f"Bearer {ADMIN_TOKEN}"}),
    ("/_dev/whatsapp/drop", {}),
    ("/_dev/yclients/webhook", {}),
]


@pytest.mark.parametrize(("name", "body", "code"), PATHOLOGICAL, ids=[p[0] for p in PATHOLOGICAL])
async def test_a_pathological_body_gets_its_documented_400(node: TestNode, name: str, body: bytes, code: str) -> None:
    for path, headers in ROUTES:
        response = await node.http.post(path, content=body, headers={"Content-Type": "application/json", **headers})
        answer: Any = response.json()
        assert (response.status_code, answer["error"]["code"]) == (400, code), (name, path, response.text[:300])


async def test_nesting_up_to_the_limit_and_big_numbers_within_it_still_parse(node: TestNode) -> None:
    # Valid content at the edges is read and then judged by the route (422 for a wrong field), not refused.
    nested = b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1)
    for field in (nested, b"1" * MAX_NUMBER_DIGITS, b"1e300", b'"\\ud83d\\ude00"'):
        response = await node.http.post(
            "/admin/companies/1/messages",
            content=b'{"to": ' + field + b"}",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert response.status_code == 422, (field[:40], response.text[:300])
