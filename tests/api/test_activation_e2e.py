"""The main job end to end on one node: a salon installs the app, links WhatsApp, and YClients hears
"installed" exactly once — from the server, only after WhatsApp really connected (faults 7 and 8).

Two routes in: the session driven through the router (the smallest path the outbox needs), and the
whole HTTP path a salon takes (marketplace install → signed redirect → onboarding token → polling QR
→ the simulated phone scans), both ending at the fake YClients mounted in the node.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import trio

from actor_admin.session import RequestQr

from .conftest import TestNode
from .test_webhook import PHONE, eventually, until_integration_status

CALLBACK = "/marketplace/partner/callback"


def activation_calls(node: TestNode) -> list[dict[str, object]]:
    return [c for c in node.services.fake_yclients.calls if c["path"] == CALLBACK]


async def test_a_connected_salon_is_activated_exactly_once(node: TestNode) -> None:
    await node.register(7, title="Салон «Лилия»")
    await node.services.router.ask(7, RequestQr())
    assert activation_calls(node) == []  # nothing is announced before WhatsApp works
    node.core.scan(await node.core.wait_qr(7), PHONE)
    with trio.fail_after(5):
        await node.services.registry.wait_state(7, "connected")
    await until_integration_status(node, 7, "active")

    company = await node.services.store.companies.get(7)
    assert company is not None and company.whatsapp_connected and company.whatsapp_phone == PHONE
    assert company.connected_at is not None and company.api_key
    (call,) = activation_calls(node)
    assert (call["method"], call["status"]) == ("POST", 201)
    assert call["json"] == {
        "salon_id": 7,
        "application_id": node.settings.yclients_app_id,
        "api_key": company.api_key,
        "webhook_urls": [node.settings.public_url + "/webhook/yclients"],
        "channels": ["whatsapp"],
    }
    events = [e.type for e in await node.services.store.events.list(7)]
    assert "activation_delivered" in events


async def test_the_whole_http_path_from_install_to_active(node: TestNode) -> None:
    http = node.http
    install = await http.get("/_dev/yclients/install", params={"salon_id": 8})
    assert install.status_code == 302
    redirect = await http.get(install.headers["location"])
    assert redirect.status_code == 302
    location = redirect.headers["location"]
    assert urlsplit(location).path == "/marketplace/onboarding" and "#token=" in location
    token = location.split("#token=", 1)[1]
    auth = {"Authorization": f"Bearer {token}"}

    async def qr_shown() -> str | None:
        answer = (await http.post("/marketplace/api/qr", headers=auth)).json()
        return answer.get("qr") if answer.get("state") == "qr" else None

    qr = await eventually(qr_shown)
    scanned = await http.post("/_dev/whatsapp/scan", json={"qr": qr, "phone": PHONE})
    assert scanned.status_code == 200

    async def connected() -> bool:
        status = (await http.get("/marketplace/api/status", headers=auth)).json()
        return bool(status.get("state") == "connected")

    await eventually(connected)
    await until_integration_status(node, 8, "active")
    (call,) = activation_calls(node)
    assert call["status"] == 201 and call["json"]["salon_id"] == 8  # type: ignore[index]
    calls = (await http.get("/_dev/yclients/calls")).json()
    assert [c["status"] for c in calls if c["path"] == CALLBACK] == [201]
    assert node.core.stats()["max_live_per_device"] == 1
