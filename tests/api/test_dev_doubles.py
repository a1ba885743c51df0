"""The dev doubles (docs/doubles.md) as the dev landing page uses them — and their absence in serve."""

from __future__ import annotations

import base64
import re

from actor_admin.config import load_settings

from ._marketplace_helpers import frame_of, get, qr_shown, served_app, viewer
from .conftest import ADMIN_TOKEN, JWT_SECRET, PARTNER_TOKEN, TestNode

LANDING_CALLS = re.compile(r'call\("(GET|POST)", "(/_dev/[a-z/_]+)')


async def test_the_landing_page_is_served_at_the_root(node: TestNode) -> None:
    response = await node.http.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'data-testid="install-form"' in response.text
    assert "x-frame-options" not in response.headers


async def test_the_current_qr_of_a_salon_is_404_until_one_is_shown_then_its_raw_payload(node: TestNode) -> None:
    await node.register(951)
    assert (await node.http.get("/_dev/whatsapp/qr?salon_id=951")).status_code == 404

    async with viewer(node.ws_url, node.token(951)) as ws:
        await frame_of(ws, "state")
        await ws.send_message('{"type": "request_qr"}')
        shown = await frame_of(ws, "qr")

        response = await node.http.get("/_dev/whatsapp/qr", params={"salon_id": "951"})

    assert response.status_code == 200
    assert response.json() == {"qr": shown["qr"]}


async def test_the_qr_endpoint_wants_a_positive_salon_id(node: TestNode) -> None:
    for query in ("", "?salon_id=", "?salon_id=abc", "?salon_id=0"):
        assert (await node.http.get("/_dev/whatsapp/qr" + query)).status_code == 422


async def test_the_landing_pages_walk_through_works_end_to_end(node: TestNode) -> None:
    """install → connect page → QR → simulated scan → connected → stats and the calls list."""
    install = await node.http.get("/_dev/yclients/install?salon_id=952")
    assert install.status_code == 302 and "/auth/yclients/redirect?" in install.headers["location"]
    redirect = await node.http.get(install.headers["location"].removeprefix(node.base_url))
    assert redirect.status_code == 302
    token = redirect.headers["location"].split("#token=")[1]

    async with viewer(node.ws_url, token) as ws:
        await frame_of(ws, "state")
        await ws.send_message('{"type": "request_qr"}')
        await frame_of(ws, "qr")
        qr = (await node.http.get("/_dev/whatsapp/qr?salon_id=952")).json()["qr"]
        scan = await node.http.post("/_dev/whatsapp/scan", json={"qr": qr, "phone": "79005550952"})
        assert scan.status_code == 200
        assert (await frame_of(ws, "connected"))["phone"] == "79005550952"

    stats = (await node.http.get("/_dev/whatsapp/stats")).json()
    assert stats["linked_devices"] == 1 and stats["max_live_per_device"] == 1
    calls = await node.http.get("/_dev/yclients/calls")
    assert calls.status_code == 200 and isinstance(calls.json(), list)


async def test_the_phone_controls_of_the_landing_page_drop_and_unlink_a_linked_phone(node: TestNode) -> None:
    await node.register(954)
    qr = await qr_shown(node, 954)
    assert (await node.http.post("/_dev/whatsapp/scan", json={"qr": qr, "phone": "79005550954"})).status_code == 200
    await node.services.registry.wait_state(954, "connected")

    linked = (await node.http.get("/_dev/whatsapp/stats")).json()["linked_devices"]
    logout = await node.http.post("/_dev/whatsapp/phones/79005550954/logout", json={})
    assert logout.status_code == 200
    assert (await node.http.get("/_dev/whatsapp/stats")).json()["linked_devices"] == linked - 1

    await node.register(955)
    qr = await qr_shown(node, 955)
    assert (await node.http.post("/_dev/whatsapp/scan", json={"qr": qr, "phone": "79005550955"})).status_code == 200
    await node.services.registry.wait_state(955, "connected")
    dropped = await node.http.post("/_dev/whatsapp/drop", json={"phone": "79005550955"})
    assert dropped.status_code == 200 and dropped.json()["dropped"] >= 1
    assert (await node.http.post("/_dev/whatsapp/pair", json={"code": "AAAA-BBBB"})).status_code == 404


async def test_the_fake_marketplace_webhook_reaches_our_webhook(node: TestNode) -> None:
    await node.register(953)

    response = await node.http.post("/_dev/yclients/webhook", json={"salon_id": 953, "event": "freeze"})

    assert response.status_code == 200
    assert response.json()["status"] == 200
    company = await node.services.store.companies.get(953)
    assert company is not None and company.integration_status == "frozen"


async def test_every_dev_endpoint_the_landing_script_calls_is_routed(node: TestNode) -> None:
    script = (await node.http.get("/static/landing.js")).text
    calls = set(LANDING_CALLS.findall(script)) | {("GET", "/_dev/yclients/install")}
    assert len(calls) >= 8, calls

    for method, path in sorted(calls):
        url = path + "79001234567/logout" if path.endswith("/phones/") else path
        response = await node.http.request(method, url, json={} if method == "POST" else None)
        # Routed means the route's own answer (its 404s carry their own codes), never "no such route".
        assert response.status_code not in (405, 500), (method, url)
        if response.status_code == 404:
            assert response.json()["error"]["code"] != "not_found", (method, url)


async def test_in_serve_mode_the_doubles_and_the_landing_page_are_absent(node: TestNode) -> None:
    def serve_settings(port: int) -> object:
        return load_settings(
            "serve",
            {
                "DATABASE_URL": "postgresql://unused@127.0.0.1/unused",
                "REDIS_URL": "redis://127.0.0.1:6379/0",
                "JWT_SECRET": JWT_SECRET,
                "ADMIN_TOKEN": ADMIN_TOKEN,
                "CREDENTIALS_KEY": base64.b64encode(bytes(range(32))).decode(),
                "YCLIENTS_PARTNER_TOKEN": PARTNER_TOKEN,
                "YCLIENTS_APP_ID": "1",
                "PUBLIC_URL": f"http://127.0.0.1:{port}",
                "PORT": str(port),
                "NODE_ID": f"serve-{port}",
            },
            dotenv=None,
        )

    async with served_app(node, serve_settings) as (url, services):  # type: ignore[arg-type]
        assert services.settings.mode == "serve"
        for path in ("/", "/_dev/whatsapp/stats", "/_dev/whatsapp/qr?salon_id=1", "/_dev/yclients/calls"):
            assert (await get(url, path)).status_code == 404, path
        assert (await get(url, "/marketplace/test")).status_code == 200
