"""``actor-admin dev`` as a real process and the salons' WhatsApp credentials (docs/commands-and-settings.md#dev).

`make run` twice keeps salons linked: with its in-process simulator and a temporary DATA_DIR. The
simulator stands in for WhatsApp's servers, which remember linked devices, so after SIGTERM and a new
start the salon reconnects with no new scan, and the start-up line counts it as connected.

And dev never touches real credentials: started with production's DATABASE_URL it refuses to run.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import httpx
import trio
from trio_websocket import open_websocket_url

from actor_admin.store import Store
from tests.api.conftest import free_port
from tests.ops.test_shutdown import (  # noqa: F401 - data_dir is a fixture, re-exported for this module
    PHONE,
    Proc,
    _base_env,
    data_dir,
    next_frame,
    onboarding_token,
    start_dev,
    stop,
)

SALON = 811


async def _wait_output(node: Proc, text: str) -> None:
    """Poll the process's log for ``text`` (bounded by the caller): the only thing we share with it."""
    while True:
        if text in node.log.read_text(errors="replace"):
            return
        await trio.sleep(0.05)


async def test_dev_restarted_reconnects_a_linked_salon_without_a_scan_and_counts_it(
    data_dir: Path, tmp_path: Path  # noqa: F811 - the fixture imported above
) -> None:
    port = free_port()
    log = tmp_path / "dev.log"
    node = await start_dev(data_dir, port, None, log)
    ws_url = node.base_url.replace("http", "ws") + "/marketplace/ws"
    async with httpx.AsyncClient(base_url=node.base_url, timeout=10) as http:
        token = await onboarding_token(http, SALON)
        headers = [("Authorization", f"Bearer {token}")]
        async with open_websocket_url(ws_url, extra_headers=headers) as ws:
            with trio.fail_after(15):
                await ws.send_message(json.dumps({"type": "request_qr"}))
                qr = await next_frame(ws, "qr")
                scanned = await http.post("/_dev/whatsapp/scan", json={"qr": qr["qr"], "phone": PHONE})
                assert scanned.status_code == 200, scanned.text
                await next_frame(ws, "connected")
    code, _ = await stop(node)
    assert code == 0, node.output()
    devices = data_dir / "simulator" / "devices.json"
    assert stat.S_IMODE(devices.stat().st_mode) == 0o600

    node = await start_dev(data_dir, port, None, log)
    try:
        async with httpx.AsyncClient(base_url=node.base_url, timeout=10) as http:
            async with open_websocket_url(ws_url, extra_headers=headers) as ws:
                with trio.fail_after(20):
                    await next_frame(ws, "connected")
            stats = (await http.get("/_dev/whatsapp/stats")).json()
        assert stats["qr_issued_total"] == 0  # this run showed no QR: nobody scanned again
        assert stats["linked_devices"] == 1 and stats["live_sessions"] == 1
        with trio.fail_after(10):
            await _wait_output(node, "reconnected 1 of 1 salon(s)")
    finally:
        code, _ = await stop(node)
    assert code == 0, node.output()


async def test_dev_refuses_a_database_holding_real_whatsapp_credentials(
    store: Store, pg_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    # The production environment loaded by mistake: dev would restore every salon through its simulator.
    await store.companies.upsert_registration(812)
    await store.credentials.save(812, b"a real device store", transport="neonize", account=PHONE)
    env = _base_env(tmp_path / "data") | {"DATABASE_URL": pg_dsn, "REDIS_URL": redis_url, "PORT": str(free_port())}
    with trio.fail_after(60):
        result = await trio.run_process(
            [sys.executable, "-m", "actor_admin", "dev"], env=env, cwd=tmp_path, capture_stderr=True, check=False
        )
    said = result.stderr.decode()
    assert result.returncode == 1, said
    assert "holds real WhatsApp credentials (1 salon(s), made by neonize)" in said
    assert "Unset DATABASE_URL" in said and "Traceback" not in said
    assert await store.credentials.load(812) == b"a real device store"
