"""``POST /webhook/yclients`` on a whole node: authenticity, idempotency, and that uninstall and
freeze really stop the live WhatsApp connection (the original's uninstall stopped nothing — fault 4)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import trio

from actor_admin.session import RequestQr

from .conftest import PARTNER_TOKEN, TestNode

PHONE = "79001234567"
T = TypeVar("T")


def hook(salon_id: int, event: str, /, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"salon_id": salon_id, "application_id": 1, "event": event, "partner_token": PARTNER_TOKEN}
    body.update(overrides)
    return body


async def connect(node: TestNode, salon_id: int, phone: str = PHONE) -> None:
    """Register the salon and link its WhatsApp through the simulator, as a salon owner would."""
    await node.register(salon_id, title=f"Salon {salon_id}")
    await node.services.router.ask(salon_id, RequestQr())
    node.core.scan(await node.core.wait_qr(salon_id), phone)
    with trio.fail_after(5):
        await node.services.registry.wait_state(salon_id, "connected")


async def eventually(check: Callable[[], Awaitable[T | None]], *, within_s: float = 5.0) -> T:
    """Wait (bounded) until ``check()`` returns something truthy; return it.

    For state that only the database shows (the node's outbox worker and the actor's store writes
    offer these tests no event), this polls: a condition wait under ``fail_after``, not a sleep
    that hopes.
    """
    with trio.fail_after(within_s):
        while True:
            value = await check()
            if value:
                return value
            await trio.sleep(0.02)


async def until_integration_status(node: TestNode, salon_id: int, status: str) -> None:
    """Wait until the company's ``integration_status`` is ``status`` (the worker polls once a second)."""

    async def reached() -> bool:
        company = await node.services.store.companies.get(salon_id)
        return company is not None and company.integration_status == status

    await eventually(reached)


async def event_types(node: TestNode, salon_id: int) -> list[str]:
    return [e.type for e in reversed(await node.services.store.events.list(salon_id))]


async def test_uninstall_stops_the_live_connection_and_deletes_the_credentials(node: TestNode) -> None:
    await connect(node, 7)
    store = node.services.store
    assert node.core.stats()["live_sessions"] == 1 and await store.credentials.load(7) is not None
    response = await node.http.post("/webhook/yclients", json=hook(7, "uninstall"))
    assert response.status_code == 200
    assert response.json() == {"success": True, "event": "uninstall", "salon_id": 7}
    assert node.core.stats()["live_sessions"] == 0
    assert not node.services.router.running(7)
    assert await store.credentials.load(7) is None
    company = await store.companies.get(7)
    assert company is not None and (company.integration_status, company.whatsapp_connected) == ("uninstalled", False)
    assert company.api_key is None
    assert "webhook_uninstall" in await event_types(node, 7)


async def test_freeze_stops_the_live_connection_and_keeps_the_credentials(node: TestNode) -> None:
    await connect(node, 7)
    store = node.services.store
    response = await node.http.post("/webhook/yclients", json=hook(7, "freeze"))
    assert response.status_code == 200 and response.json()["success"] is True
    assert node.core.stats()["live_sessions"] == 0
    assert not node.services.router.running(7)
    assert await store.credentials.load(7) is not None
    company = await store.companies.get(7)
    assert company is not None and (company.integration_status, company.whatsapp_connected) == ("frozen", False)
    assert node.core.stats()["linked_devices"] == 1  # frozen, not logged out: the device stays linked


async def test_a_repeated_uninstall_is_recognised_and_changes_nothing(node: TestNode) -> None:
    await connect(node, 7)
    first = await node.http.post("/webhook/yclients", json=hook(7, "uninstall"))
    again = await node.http.post("/webhook/yclients", json=hook(7, "uninstall"))
    assert first.json().get("duplicate") is None
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert (await event_types(node, 7)).count("webhook_uninstall") == 1


async def test_a_wrong_partner_token_changes_nothing_and_is_logged_without_the_token(
    node: TestNode, caplog: pytest.LogCaptureFixture
) -> None:
    await connect(node, 7)
    forged = "forged-" + "x" * 20
    caplog.set_level(logging.WARNING)
    response = await node.http.post("/webhook/yclients", json=hook(7, "uninstall", partner_token=forged))
    assert (response.status_code, response.json()) == (200, {"success": False})
    assert node.core.stats()["live_sessions"] == 1 and node.services.router.running(7)
    company = await node.services.store.companies.get(7)
    assert company is not None and company.whatsapp_connected
    assert company.integration_status in ("activating", "active")  # the activation goes on untouched
    assert await node.services.store.credentials.load(7) is not None
    warnings = [r.getMessage() for r in caplog.records if "partner_token" in r.getMessage()]
    assert warnings and all(forged not in w and PARTNER_TOKEN not in w for w in warnings)
    assert all(forged not in r.getMessage() for r in caplog.records)


async def test_a_webhook_for_another_application_is_skipped(node: TestNode) -> None:
    await connect(node, 7)
    response = await node.http.post("/webhook/yclients", json=hook(7, "uninstall", application_id=999))
    assert (response.status_code, response.json()) == (200, {"skipped": "different_application"})
    assert node.core.stats()["live_sessions"] == 1
    assert "webhook_uninstall" not in await event_types(node, 7)


async def test_an_unknown_event_is_recorded_and_answered_200(node: TestNode) -> None:
    await node.register(7)
    response = await node.http.post("/webhook/yclients", json=hook(7, "payment_received"))
    assert response.status_code == 200 and response.json() == {"success": True, "recorded": True}
    (event,) = [e for e in await node.services.store.events.list(7) if e.type == "webhook_unknown"]
    assert event.data == {"event": "payment_received"}
    company = await node.services.store.companies.get(7)
    assert company is not None and company.integration_status == "pending_whatsapp"


async def test_uninstall_of_a_salon_we_never_saw_is_recorded_and_answered_200(node: TestNode) -> None:
    response = await node.http.post("/webhook/yclients", json=hook(404, "uninstall"))
    assert response.status_code == 200 and response.json()["unknown_salon"] is True
    assert await event_types(node, 404) == ["webhook_uninstall"]


async def test_malformed_json_is_400(node: TestNode) -> None:
    response = await node.http.post(
        "/webhook/yclients", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_json"


@pytest.mark.parametrize(
    "body",
    [
        [1, 2],
        {"application_id": 1, "event": "uninstall", "partner_token": PARTNER_TOKEN},
        hook(7, "uninstall", salon_id="7"),
        hook(7, "uninstall", salon_id=True),
        hook(7, "uninstall", application_id=None),
        hook(7, "uninstall", event=5),
        hook(7, "uninstall", partner_token=123),
        hook(7, "x" * 65),
        hook(2**70, "uninstall"),
        hook(7, "unin\u0000stall"),
        # A lone surrogate ("\ud800") is refused earlier, as JSON: 400 (test_pathological_json.py).
    ],
)
async def test_wrong_types_are_422_with_the_error_shape(node: TestNode, body: Any) -> None:
    # ASCII-escaped JSON, as a client may send it (a NUL travels as "\\u0000").
    raw = json.dumps(body).encode()
    response = await node.http.post("/webhook/yclients", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] in ("invalid_field", "invalid_body") and error["message"]


async def test_a_reinstall_after_uninstall_starts_over_and_activates_again(node: TestNode) -> None:
    fake = node.services.fake_yclients
    await connect(node, 7)
    await until_integration_status(node, 7, "active")
    # The real path: YClients removes the app on its side, then tells us.
    status, answer = await fake.send_webhook(7, "uninstall")
    assert (status, answer["success"]) == (200, True)
    company = await node.register(7)  # the next signed redirect's upsert
    assert company.integration_status == "pending_whatsapp"
    await connect(node, 7, phone="79007654321")
    await until_integration_status(node, 7, "active")
    installs = [c["status"] for c in fake.calls if c["path"] == "/marketplace/partner/callback"]
    assert installs == [201, 201]
