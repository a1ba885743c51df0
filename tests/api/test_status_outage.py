"""A WhatsApp outage seen from the operations endpoints of a real node (docs/http-api.md#status):
``/status`` says so, ``/readyz`` stays 200 and says so too, and no salon is claimed connected."""

from __future__ import annotations

import trio

from actor_admin.session import RequestQr

from .conftest import TestNode

SALONS = range(7101, 7107)


async def link(node: TestNode, salon_id: int) -> None:
    await node.services.router.ask(salon_id, RequestQr())
    with trio.fail_after(10):
        node.core.scan(await node.core.wait_qr(salon_id), f"7902{salon_id:07d}")
        await node.services.registry.wait_state(salon_id, "connected")


async def test_an_outage_shows_in_status_and_readyz_without_making_the_node_unready(node: TestNode) -> None:
    for salon in SALONS:
        await node.register(salon)
        await link(node, salon)
    status = (await node.http.get("/status", headers={"Accept": "application/json"})).json()
    assert status["whatsapp"] == {"upstream": "ok", "since": None, "held_back": 0}
    answer = await node.http.post("/_dev/whatsapp/outage", json={"seconds": 600})
    assert answer.status_code == 200 and answer.json()["dropped"] == len(SALONS)
    with trio.fail_after(10):
        while True:
            status = (await node.http.get("/status", headers={"Accept": "application/json"})).json()
            if status["whatsapp"]["upstream"] == "outage" and status["whatsapp"]["held_back"] == len(SALONS):
                break
            await trio.sleep(0.05)
    whatsapp = status["whatsapp"]
    assert whatsapp["since"].endswith("Z") and whatsapp["probes"] == 0 and whatsapp["next_probe_in_s"] > 30
    assert status["actors"]["by_state"].get("connected", 0) == 0  # nobody is claimed connected
    ready = await node.http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert ready.json()["whatsapp"]["upstream"] == "outage"
    metrics = (await node.http.get("/metrics")).text
    assert "actor_admin_whatsapp_outage 1.0" in metrics
    assert f"actor_admin_whatsapp_held_back {float(len(SALONS))}" in metrics
    # The simulator's control API refuses nonsense with the documented shapes.
    bad = await node.http.post("/_dev/whatsapp/outage", json={"seconds": "soon"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_seconds"
    ended = await node.http.post("/_dev/whatsapp/outage", json={"seconds": 0})
    assert ended.json() == {"dropped": 0, "outage_ends_in": 0.0}
