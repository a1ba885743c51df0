"""The original system's faults (docs/architecture.md#original-faults) that live at the HTTP and websocket
edge — one test each, named for the fault, trying to reproduce it against a real node."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Any

import pytest
from trio_websocket import ConnectionRejected

from actor_admin.api._tokens import verify_onboarding_token

from ._marketplace_helpers import frame_of, install_url, receive, served_app, viewer
from .conftest import JWT_SECRET, PARTNER_TOKEN, TestNode, node_settings


async def test_fault_1_unsigned_registration_gets_no_token_and_stores_nothing(node: TestNode) -> None:
    for query in ("salon_id=901", "salon_id=901&user_data=eyJpZCI6MX0=", "salon_id=901&user_data_sign=00"):
        response = await node.http.get("/auth/yclients/redirect?" + query)

        assert response.status_code == 403
        assert "token" not in response.headers.get("location", "")
        assert "eyJ" not in response.text  # no JWT anywhere in the page
    assert await node.services.store.companies.get(901) is None
    assert await node.services.store.events.list(901) == []


async def test_fault_2_signature_and_partner_token_compares_are_constant_time(
    node: TestNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[Any, Any]] = []
    real: Callable[[Any, Any], bool] = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    url = install_url(node, [902])
    sign = url.rsplit("=", 1)[1]
    forged = url[: -len(sign)] + "f" * len(sign)

    assert (await node.http.get(forged)).status_code == 403
    assert any(b"f" * len(sign) in (a, b) for a, b in compared), "the signature was not compared in constant time"

    compared.clear()
    webhook = await node.http.post(
        "/webhook/yclients",
        json={"salon_id": 902, "application_id": 1, "event": "freeze", "partner_token": "wrong-" + PARTNER_TOKEN},
    )
    assert webhook.status_code == 200 and webhook.json() == {"success": False}
    assert compared, "the partner token was not compared in constant time"


async def test_fault_3_an_onboarding_token_never_opens_the_admin_api(node: TestNode) -> None:
    await node.register(903)
    response = await node.http.get("/admin/companies", headers=node.bearer(903))
    assert response.status_code in (401, 403)
    detail = await node.http.get("/admin/companies/903", headers=node.bearer(903))
    assert detail.status_code in (401, 403)
    assert (await node.http.get("/admin/companies", headers=node.admin)).status_code == 200


async def test_fault_8_activation_needs_a_real_whatsapp_connection_on_the_server(node: TestNode) -> None:
    await node.register(908)
    token = node.token(908)
    # The page has no way to claim "connected": the original's POST /marketplace/activate is gone.
    for path in ("/marketplace/activate", "/marketplace/api/activate"):
        claim = await node.http.post(path, json={"token": token}, headers={"Authorization": f"Bearer {token}"})
        assert claim.status_code in (404, 405)

    async with viewer(node.ws_url, token) as ws:
        await frame_of(ws, "state")
        await ws.send_message('{"type": "request_qr"}')
        qr = await frame_of(ws, "qr")

        company = await node.services.store.companies.get(908)
        assert company is not None and company.integration_status == "pending_whatsapp"
        assert not company.whatsapp_connected and company.api_key is None

        node.core.scan(qr["qr"], "79005550908")
        await frame_of(ws, "connected")

    # The registry shows a step's new state only after all its effects, the store write included.
    await node.services.registry.wait_state(908, "connected")
    company = await node.services.store.companies.get(908)
    assert company is not None and company.whatsapp_connected
    assert company.integration_status in ("activating", "active")


async def test_fault_9_the_websocket_rate_limit_holds_across_nodes(node: TestNode) -> None:
    """Ten connections from one IP at the first node use up the minute; the second node, sharing
    only Redis with the first, refuses the eleventh."""
    for _ in range(10):
        async with viewer(node.ws_url, node.token(909)) as ws:
            await receive(ws)

    async with served_app(node, lambda port: node_settings(port)) as (second_url, _services):
        second_ws = second_url.replace("http://", "ws://") + "/marketplace/ws"
        with pytest.raises(ConnectionRejected) as rejected:
            async with viewer(second_ws, node.token(909)):
                pass

    assert rejected.value.status_code == 429
    limiter = node.services.limiter
    ttl = await node.services.redis.execute("PTTL", limiter.key_for("ws:127.0.0.1"))
    assert 0 < int(ttl) <= 60_000, "the limiter's key must expire by itself"


async def test_fault_10_the_token_never_travels_in_a_query_string(node: TestNode) -> None:
    one = await node.http.get(install_url(node, [910]))
    several = await node.http.get(install_url(node, [911, 912]))

    location = one.headers["location"]
    assert location.startswith("/marketplace/onboarding#token=") and "?" not in location
    assert verify_onboarding_token(JWT_SECRET, location.split("#token=")[1], now=time.time()).salon_id == 910
    assert several.text.count("/marketplace/onboarding#token=") == 2
    assert "?token=" not in several.text and "&token=" not in several.text
    for response in (one, several):
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
