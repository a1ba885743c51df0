"""The connect page and its REST fallbacks (docs/http-api.md#onboarding): headers, token checks, QR, status, pairing."""

from __future__ import annotations

import re

import pytest
import trio

from ._marketplace_helpers import bad_tokens, qr_shown
from .conftest import TestNode

PAIRING_CODE = re.compile(r"^[A-Z0-9]{4}-[A-Z0-9]{4}$")


async def test_connect_page_is_framable_by_yclients_only_and_never_cached(node: TestNode) -> None:
    response = await node.http.get("/marketplace/onboarding")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'data-testid="app"' in response.text
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'self' https://yclients.com https://*.yclients.com" in csp
    assert "x-frame-options" not in response.headers
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


async def test_smoke_check_answers_ok(node: TestNode) -> None:
    response = await node.http.get("/marketplace/test")

    assert response.status_code == 200
    assert response.json() == {"ok": True}


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/marketplace/api/qr"), ("GET", "/marketplace/api/status"), ("POST", "/marketplace/api/pairing-code")],
)
async def test_rest_without_a_token_is_401(node: TestNode, method: str, path: str) -> None:
    response = await node.http.request(method, path, json={"phone": "79001234567"})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("kind", ["tampered", "expired", "alg_none", "wrong_audience", "wrong_secret", "garbage"])
async def test_rest_refuses_a_forged_or_stale_token_with_401(node: TestNode, kind: str) -> None:
    token = bad_tokens(601, node.token(601))[kind]

    response = await node.http.post("/marketplace/api/qr", headers={"Authorization": f"Bearer {token}"}, json={})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert not node.services.router.running(601) and not node.services.router.running(602)


async def test_rest_refuses_the_admin_token(node: TestNode) -> None:
    response = await node.http.get("/marketplace/api/status", headers=node.admin)

    assert response.status_code == 401


async def test_status_reports_the_salon_of_the_token_and_starts_nothing(node: TestNode) -> None:
    await node.register(602)

    response = await node.http.get("/marketplace/api/status", headers=node.bearer(602))

    assert response.status_code == 200
    assert response.json() == {"salon_id": 602, "state": "idle", "phone": None}
    assert not node.services.router.running(602)


async def test_polling_for_a_qr_starts_the_session_and_returns_the_raw_qr(node: TestNode) -> None:
    await node.register(603)

    response = await node.http.post("/marketplace/api/qr", headers=node.bearer(603), json={})

    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "qr"
    assert body["qr"] == node.core.qr_for(603)
    assert "svg" not in body  # the page draws the code from the payload
    assert 0 < body["expires_in"] <= 60


async def test_polling_twice_returns_the_same_qr(node: TestNode) -> None:
    await node.register(604)

    first = (await node.http.post("/marketplace/api/qr", headers=node.bearer(604), content=b"")).json()
    second = (await node.http.post("/marketplace/api/qr", headers=node.bearer(604), json={})).json()

    assert first["qr"] == second["qr"]


async def test_status_after_linking_is_connected_with_a_digits_only_phone(node: TestNode) -> None:
    await node.register(605)
    node.core.scan(await qr_shown(node, 605), "+7 (900) 555-06-05")
    await node.services.registry.wait_state(605, "connected")

    status = (await node.http.get("/marketplace/api/status", headers=node.bearer(605))).json()
    polled = (await node.http.post("/marketplace/api/qr", headers=node.bearer(605), json={})).json()

    assert status == {"salon_id": 605, "state": "connected", "phone": "79005550605"}
    assert polled == {"state": "connected", "phone": "79005550605"}


async def test_pairing_code_over_rest_links_the_phone(node: TestNode) -> None:
    await node.register(606)

    response = await node.http.post(
        "/marketplace/api/pairing-code", headers=node.bearer(606), json={"phone": "+7 900 555-06-06"}
    )

    assert response.status_code == 200
    body = response.json()
    assert PAIRING_CODE.match(body["code"])
    assert body["expires_in"] > 0
    node.core.pair(body["code"])
    view = await node.services.registry.wait_state(606, "connected")
    assert view.phone == "79005550606"


@pytest.mark.parametrize("phone", ["12345", "+7 900", "abc", "1" * 16, ""])
async def test_a_phone_that_is_not_10_to_15_digits_is_422_invalid_phone(node: TestNode, phone: str) -> None:
    response = await node.http.post("/marketplace/api/pairing-code", headers=node.bearer(607), json={"phone": phone})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_phone"
    assert not node.services.router.running(607)


@pytest.mark.parametrize("body", [b'{"phone": 79001234567}', b'{"phone": null}', b"{}", b'["79001234567"]', b"42"])
async def test_wrong_types_are_422(node: TestNode, body: bytes) -> None:
    response = await node.http.post(
        "/marketplace/api/pairing-code",
        headers={**node.bearer(608), "Content-Type": "application/json"},
        content=body,
    )

    assert response.status_code == 422


@pytest.mark.parametrize("path", ["/marketplace/api/qr", "/marketplace/api/pairing-code"])
async def test_malformed_json_is_400(node: TestNode, path: str) -> None:
    response = await node.http.post(
        path, headers={**node.bearer(609), "Content-Type": "application/json"}, content=b'{"phone": '
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_json"


async def test_an_uninstalled_salon_gets_no_qr_and_no_session(node: TestNode) -> None:
    await node.register(610)
    await node.services.store.companies.mark_uninstalled(610)

    qr = await node.http.post("/marketplace/api/qr", headers=node.bearer(610), json={})
    status = await node.http.get("/marketplace/api/status", headers=node.bearer(610))

    assert qr.status_code == 409 and qr.json()["error"]["code"] == "uninstalled"
    assert status.json()["state"] == "uninstalled"
    assert not node.services.router.running(610)


async def test_a_pairing_code_while_a_device_is_linked_is_refused_with_409(node: TestNode) -> None:
    await node.register(611)
    node.core.scan(await qr_shown(node, 611), "79005550611")
    await node.services.registry.wait_state(611, "connected")

    response = await node.http.post(
        "/marketplace/api/pairing-code", headers=node.bearer(611), json={"phone": "79005550611"}
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_linked"


async def test_polling_a_salon_with_stored_credentials_reconnects_without_waiting_for_a_qr(node: TestNode) -> None:
    await node.register(612)
    node.core.scan(await qr_shown(node, 612), "79005550612")
    await node.services.registry.wait_state(612, "connected")
    await node.services.router.stop(612)  # graceful: the device stays linked, credentials stay stored

    with trio.fail_after(2):  # well under the 5 s a QR is waited for
        response = await node.http.post("/marketplace/api/qr", headers=node.bearer(612), json={})

    assert response.json()["state"] in ("connecting", "connected")
    assert "qr" not in response.json()
