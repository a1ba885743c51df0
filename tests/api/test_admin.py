"""The admin and service API (docs/http-api.md#admin-api) on a whole node."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import trio

from actor_admin.api._tokens import verify_onboarding_token
from actor_admin.doubles.yclients import Fault

from .conftest import JWT_SECRET, TestNode
from .test_webhook import PHONE, connect, eventually, until_integration_status

COMPANY_FIELDS = {
    "salon_id",
    "title",
    "integration_status",
    "state",
    "phone",
    "whatsapp_connected",
    "connected_at",
    "node",
    "restarts",
    "last_error",
    "since",
}


async def until_sent(node: TestNode, count: int) -> None:
    with trio.fail_after(5):
        await node.core.wait_for(lambda: len(node.core.sent_messages(PHONE)) >= count)


async def message(node: TestNode, message_id: int) -> Any:
    return await node.services.store.messages.get(message_id)


async def until_status(node: TestNode, message_id: int, status: str) -> Any:
    """The actor records a send's outcome just after the simulator sent it; wait for that write."""

    async def reached() -> Any:
        found = await message(node, message_id)
        return found if found.status == status else None

    return await eventually(reached)


async def _count_at_least(node: TestNode, salon_id: int, count: int) -> bool:
    return len(await node.services.store.messages.latest(salon_id)) >= count


# -- authentication ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer"},
    ],
    ids=["missing", "wrong", "basic", "empty"],
)
async def test_admin_routes_need_the_admin_token(node: TestNode, headers: dict[str, str]) -> None:
    await node.register(7)
    for method, path in [
        ("GET", "/admin/companies"),
        ("GET", "/admin/companies/7"),
        ("POST", "/admin/companies/7/logout"),
    ]:
        response = await node.http.request(method, path, headers=headers)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert await node.services.store.credentials.load(7) is None  # nothing ran


async def test_an_onboarding_jwt_never_opens_the_admin_api(node: TestNode) -> None:
    await node.register(7)
    for path in ("/admin/companies", "/admin/companies/7"):
        response = await node.http.get(path, headers=node.bearer(7))
        assert response.status_code == 401


# -- companies -----------------------------------------------------------------------------------


async def test_list_shows_every_company_with_the_documented_fields(node: TestNode) -> None:
    for salon_id in (3, 1, 2):
        await node.register(salon_id, title=f"Salon {salon_id}")
    response = await node.http.get("/admin/companies", headers=node.admin)
    assert response.status_code == 200
    body = response.json()
    assert (body["page"], body["total"]) == (1, 3)
    assert [c["salon_id"] for c in body["companies"]] == [1, 2, 3]
    first = body["companies"][0]
    assert set(first) == COMPANY_FIELDS
    assert (first["title"], first["integration_status"], first["state"], first["node"], first["restarts"]) == (
        "Salon 1",
        "pending_whatsapp",
        None,
        None,
        0,
    )


async def test_list_pages_and_filters_by_integration_status(node: TestNode) -> None:
    for salon_id in range(1, 6):
        await node.register(salon_id)
    await node.services.store.companies.set_integration_status(4, "frozen")
    page = (await node.http.get("/admin/companies?page=2&per_page=2", headers=node.admin)).json()
    assert ([c["salon_id"] for c in page["companies"]], page["page"], page["total"]) == ([3, 4], 2, 5)
    frozen = (await node.http.get("/admin/companies?state=frozen", headers=node.admin)).json()
    assert [c["salon_id"] for c in frozen["companies"]] == [4] and frozen["total"] == 1


async def test_list_filters_by_live_session_state_and_shows_this_node(node: TestNode) -> None:
    await node.register(1)
    await connect(node, 2)
    body = (await node.http.get("/admin/companies?state=connected", headers=node.admin)).json()
    assert body["total"] == 1
    (company,) = body["companies"]
    assert (company["salon_id"], company["state"], company["phone"], company["node"]) == (
        2,
        "connected",
        PHONE,
        node.settings.node_id,
    )
    assert company["whatsapp_connected"] is True and company["since"].endswith("Z")


@pytest.mark.parametrize("query", ["state=sleepy", "page=0", "page=x", "per_page=201"])
async def test_bad_list_queries_are_422(node: TestNode, query: str) -> None:
    response = await node.http.get(f"/admin/companies?{query}", headers=node.admin)
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_query"


async def test_get_one_company_and_404_for_an_unknown_one(node: TestNode) -> None:
    await node.register(7, title="Beauty")
    response = await node.http.get("/admin/companies/7", headers=node.admin)
    assert response.status_code == 200 and set(response.json()) == COMPANY_FIELDS
    assert response.json()["title"] == "Beauty"
    missing = await node.http.get("/admin/companies/8", headers=node.admin)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_salon"
    huge = await node.http.get(f"/admin/companies/{2**70}", headers=node.admin)
    assert huge.status_code == 404


async def test_restart_reconnects_from_stored_credentials_without_a_rescan(node: TestNode) -> None:
    await connect(node, 7)
    response = await node.http.post("/admin/companies/7/restart", headers=node.admin)
    assert response.status_code == 200 and response.json()["restarts"] >= 1
    with trio.fail_after(5):
        await node.services.registry.wait_state(7, "connected")
    stats = node.core.stats()
    assert (stats["live_sessions"], stats["linked_devices"], stats["max_live_per_device"]) == (1, 1, 1)


async def test_restart_of_a_frozen_salon_is_refused(node: TestNode) -> None:
    await node.register(7)
    await node.services.store.companies.mark_frozen(7)
    response = await node.http.post("/admin/companies/7/restart", headers=node.admin)
    assert response.status_code == 409 and response.json()["error"]["code"] == "frozen"
    assert not node.services.router.running(7)


async def test_logout_unlinks_the_device_and_deletes_the_credentials(node: TestNode) -> None:
    await connect(node, 7)
    response = await node.http.post("/admin/companies/7/logout", headers=node.admin)
    assert response.status_code == 200
    body = response.json()
    assert (body["device_unlinked"], body["credentials_deleted"]) == (True, True)
    assert await node.services.store.credentials.load(7) is None
    assert node.core.stats()["linked_devices"] == 0 and node.core.stats()["live_sessions"] == 0


async def test_logout_without_a_live_link_still_deletes_the_credentials_and_says_so(node: TestNode) -> None:
    await connect(node, 7)
    await node.services.router.stop(7)  # e.g. the session runs nowhere right now
    response = await node.http.post("/admin/companies/7/logout", headers=node.admin)
    body = response.json()
    assert response.status_code == 200 and (body["device_unlinked"], body["had_credentials"]) == (False, True)
    assert "no live WhatsApp connection" in body["note"]
    assert await node.services.store.credentials.load(7) is None


async def test_onboarding_link_carries_a_valid_token_in_the_fragment(node: TestNode) -> None:
    await node.register(7)
    response = await node.http.post("/admin/companies/7/onboarding-link", headers=node.admin)
    url = response.json()["url"]
    prefix = node.settings.public_url + "/marketplace/onboarding#token="
    assert response.status_code == 200 and url.startswith(prefix) and "?" not in url
    claims = verify_onboarding_token(JWT_SECRET, url.removeprefix(prefix), now=time.time())
    assert claims.salon_id == 7
    assert (await node.http.post("/admin/companies/8/onboarding-link", headers=node.admin)).status_code == 404


async def test_a_failed_activation_is_requeued_and_delivered(node: TestNode) -> None:
    fake = node.services.fake_yclients
    fake.add_fault(Fault(path="/marketplace/partner/callback", status=422, times=1))
    await connect(node, 7)
    await until_integration_status(node, 7, "activation_failed")
    response = await node.http.post("/admin/companies/7/activate", headers=node.admin)
    assert response.status_code == 202 and response.json()["integration_status"] == "activating"
    await until_integration_status(node, 7, "active")
    statuses = [c["status"] for c in fake.calls if c["path"] == "/marketplace/partner/callback"]
    assert statuses == [422, 201]


async def test_activate_is_refused_unless_the_activation_failed(node: TestNode) -> None:
    await node.register(7)
    response = await node.http.post("/admin/companies/7/activate", headers=node.admin)
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_activation_failed"
    await node.services.store.companies.set_integration_status(7, "activation_failed")
    response = await node.http.post("/admin/companies/7/activate", headers=node.admin)
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_connected"


# -- messages ------------------------------------------------------------------------------------


def outbound(key: str, text: str = "Ждём вас завтра в 10:00", to: str = "+7 (900) 111-22-33") -> dict[str, str]:
    return {"to": to, "text": text, "idempotency_key": key}


async def test_a_message_is_sent_once_however_often_its_key_is_repeated(node: TestNode) -> None:
    await connect(node, 7)
    first = await node.http.post("/admin/companies/7/messages", json=outbound("k-1"), headers=node.admin)
    assert first.status_code == 202
    message_id = first.json()["id"]
    for _ in range(3):
        again = await node.http.post("/admin/companies/7/messages", json=outbound("k-1"), headers=node.admin)
        assert again.status_code == 200 and again.json()["id"] == message_id
    await until_sent(node, 1)
    sent = await until_status(node, message_id, "sent")
    (delivered,) = node.core.sent_messages(PHONE)
    assert (delivered.to, delivered.wa_id) == ("79001112233", sent.wa_id)


async def test_sending_without_a_live_connection_is_409_not_connected(node: TestNode) -> None:
    await node.register(7)
    response = await node.http.post("/admin/companies/7/messages", json=outbound("k-1"), headers=node.admin)
    assert response.status_code == 409 and response.json()["error"]["code"] == "not_connected"
    assert await node.services.store.messages.get_outbound(7, "k-1") is None


@pytest.mark.parametrize(
    "body",
    [
        {"to": "79001112233", "text": "hi"},
        {"to": "79001112233", "text": "", "idempotency_key": "k"},
        {"to": 79001112233, "text": "hi", "idempotency_key": "k"},
        {"to": "123", "text": "hi", "idempotency_key": "k"},
        {"to": "79001112233", "text": "nul \u0000 inside", "idempotency_key": "k"},
        # A lone surrogate ("\udc00") is refused earlier, as JSON: 400 (test_pathological_json.py).
    ],
)
async def test_bad_message_bodies_are_422(node: TestNode, body: dict[str, Any]) -> None:
    await connect(node, 7)
    raw = json.dumps(body).encode()  # ASCII-escaped, as a client may send it
    headers = {**node.admin, "Content-Type": "application/json"}
    response = await node.http.post("/admin/companies/7/messages", content=raw, headers=headers)
    assert response.status_code == 422
    assert node.core.sent_messages() == []


async def test_sends_are_paced_per_company(node: TestNode) -> None:
    await connect(node, 7)
    ids = []
    for key in ("k-1", "k-2"):
        response = await node.http.post("/admin/companies/7/messages", json=outbound(key), headers=node.admin)
        ids.append(response.json()["id"])
    await until_sent(node, 1)
    # At most 20 a minute: the second leaves 3 s after the first, so it is still waiting now.
    assert len(node.core.sent_messages(PHONE)) == 1
    assert (await message(node, ids[1])).status == "queued"
    listing = (await node.http.get("/admin/companies/7/messages?direction=out", headers=node.admin)).json()
    assert [m["id"] for m in listing["messages"]] == [ids[1], ids[0]]  # newest first


async def test_listing_messages_newest_first_by_direction(node: TestNode) -> None:
    await connect(node, 7)
    node.core.inbound(PHONE, "79005550000", "Здравствуйте! Можно записаться?")
    # Stored first (its batch may still be on its way when the request below is handled).
    await eventually(lambda: _count_at_least(node, 7, 1))
    await node.http.post("/admin/companies/7/messages", json=outbound("k-1"), headers=node.admin)
    await eventually(lambda: _count_at_least(node, 7, 2))
    both = (await node.http.get("/admin/companies/7/messages", headers=node.admin)).json()["messages"]
    assert [m["direction"] for m in both] == ["out", "in"]
    assert set(both[0]) == {"id", "wa_id", "direction", "peer", "text", "at", "status"}
    inbound = (await node.http.get("/admin/companies/7/messages?direction=in&limit=1", headers=node.admin)).json()
    (only,) = inbound["messages"]
    assert (only["peer"], only["text"], only["status"]) == (
        "79005550000",
        "Здравствуйте! Можно записаться?",
        "received",
    )
    for query in ("limit=0", "limit=201", "direction=sideways"):
        bad = await node.http.get(f"/admin/companies/7/messages?{query}", headers=node.admin)
        assert bad.status_code == 422, query
