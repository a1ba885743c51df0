"""``actor-admin dev`` as a real process: starts from an empty ``DATA_DIR``, stops on SIGTERM within the
deadline with exit 0 while a viewer watches (close code 1001), keeps the salon's device linked, and on
the next start reconnects the salon **without a new QR scan** — the "no rescan" promise. A SIGKILL
takes the embedded servers with it (parent-death signal), and the next start comes up on the same data.

The WhatsApp simulator runs as its own process (``actor-admin simulator``) so the phone's side
outlives the node, as the real WhatsApp does. The node uses its embedded PostgreSQL and Redis
(``DATABASE_URL``/``REDIS_URL`` are removed from its environment), so nothing touches shared servers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from actor_admin.store import EmbeddedPostgres
from tests.api.conftest import free_port

START_TIMEOUT_S = 60.0
SHUTDOWN_DEADLINE_S = 10.0  # SHUTDOWN_DEADLINE's default (docs/commands-and-settings.md#settings)
PHONE = "79001234567"


@attrs.define
class Proc:
    process: trio.Process
    base_url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="aa-dev-"))  # 0700: the embedded servers must not need more
    try:
        yield root / "data"
    finally:
        server = EmbeddedPostgres(root / "data" / "pg")
        if server.is_running():  # a failed test may leave it; stop it so no server outlives the run
            server.start()
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _base_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "PUBLIC_URL", "PORT"}}
    env.update({"DATA_DIR": str(data_dir), "HOST": "127.0.0.1", "LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1"})
    return env


async def _wait_http(url: str, *, status: int = 200) -> None:
    """Poll ``url`` until it answers ``status``: the process is outside trio's reach, so this is the
    one place that polls (bounded by the caller's ``fail_after``)."""
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            try:
                if (await http.get(url)).status_code == status:
                    return
            except httpx.HTTPError:
                pass
            await trio.sleep(0.05)


async def start_dev(data_dir: Path, port: int, simulator_url: str | None, log: Path) -> Proc:
    env = _base_env(data_dir) | {"PORT": str(port)}
    if simulator_url:
        env["WHATSAPP_SIMULATOR_URL"] = simulator_url
    handle = log.open("ab")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "actor_admin", "dev"], env=env, cwd=data_dir.parent, stdout=handle, stderr=handle
    )
    proc = Proc(process, f"http://127.0.0.1:{port}", log)
    try:
        with trio.fail_after(START_TIMEOUT_S):
            await _wait_http(proc.base_url + "/readyz")
    except trio.TooSlowError:
        process.kill()
        raise AssertionError("actor-admin dev did not become ready:\n" + proc.output()) from None
    return proc


async def stop(proc: Proc, signum: int = signal.SIGTERM) -> tuple[int, float]:
    """Send ``signum``; return the exit status and how long the process took to exit."""
    started = trio.current_time()
    proc.process.send_signal(signum)
    with trio.fail_after(SHUTDOWN_DEADLINE_S + 10):
        code = await proc.process.wait()
    return code, trio.current_time() - started


@pytest.fixture
async def simulator(tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    handle = (tmp_path / "simulator.log").open("ab")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "actor_admin", "simulator", "--port", str(port)], stdout=handle, stderr=handle
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with trio.fail_after(20):
            await _wait_http(url + "/stats")
        yield url
    finally:
        process.terminate()
        with trio.move_on_after(5):
            await process.wait()
        process.kill()


async def onboarding_token(http: httpx.AsyncClient, salon_id: int) -> str:
    """Install the app in a salon through the fake marketplace, as YClients would: → our redirect → token."""
    install = await http.get(f"/_dev/yclients/install?salon_id={salon_id}")
    assert install.status_code == 302, install.text
    redirect = await http.get(install.headers["location"])
    assert redirect.status_code == 302, redirect.text
    fragment = urlsplit(redirect.headers["location"]).fragment
    return fragment.removeprefix("token=")


async def next_frame(ws: WebSocketConnection, kind: str) -> dict[str, Any]:
    """The next frame of type ``kind`` (for ``connected``, also a ``state`` frame saying so)."""
    while True:
        frame = json.loads(await ws.get_message())
        if frame.get("type") == kind or (kind == "connected" and frame.get("state") == "connected"):
            return dict(frame)


async def test_sigterm_stops_within_the_deadline_and_the_next_start_reconnects_without_a_rescan(
    data_dir: Path, simulator: str, tmp_path: Path
) -> None:
    port = free_port()
    node = await start_dev(data_dir, port, simulator, tmp_path / "dev.log")
    sim = httpx.AsyncClient(base_url=simulator, timeout=5)
    async with httpx.AsyncClient(base_url=node.base_url, timeout=10) as http, sim:
        token = await onboarding_token(http, 801)
        headers = [("Authorization", f"Bearer {token}")]
        async with open_websocket_url(
            node.base_url.replace("http", "ws") + "/marketplace/ws", extra_headers=headers
        ) as ws:
            with trio.fail_after(10):
                await ws.send_message(json.dumps({"type": "request_qr"}))
                qr = await next_frame(ws, "qr")
                # dev's /_dev/whatsapp/ forwards to the standalone simulator named by WHATSAPP_SIMULATOR_URL
                shown = await http.get("/_dev/whatsapp/qr", params={"salon_id": 801})
                assert shown.status_code == 200 and shown.json()["qr"] == qr["qr"]
                scanned = await sim.post("/scan", json={"qr": qr["qr"], "phone": PHONE})
                assert scanned.status_code == 200, scanned.text
                await next_frame(ws, "connected")
            before = (await sim.get("/stats")).json()
            assert (await http.get("/_dev/whatsapp/stats")).json() == before

            code, took = await stop(node)
            with trio.fail_after(5), pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.get_message()
        print(f"SIGTERM with one connected salon and a viewer: exit {code} after {took:.2f} s")
        assert code == 0, node.output()
        assert took < SHUTDOWN_DEADLINE_S
        assert closed.value.reason is not None and closed.value.reason.code == 1001
        after_stop = (await sim.get("/stats")).json()
        assert after_stop["linked_devices"] == 1  # a graceful stop does not log the device out
        assert after_stop["live_sessions"] == 0

        node = await start_dev(data_dir, port, simulator, tmp_path / "dev.log")
        async with open_websocket_url(
            node.base_url.replace("http", "ws") + "/marketplace/ws", extra_headers=headers
        ) as ws:
            with trio.fail_after(20):
                await next_frame(ws, "connected")
        stats = (await sim.get("/stats")).json()
        assert stats["qr_issued_total"] == before["qr_issued_total"]  # no new QR: no rescan
        assert stats["linked_devices"] == 1 and stats["live_sessions"] == 1
        assert stats["max_live_per_device"] == 1 and stats["replaced_total"] == 0
        code, _ = await stop(node)
        assert code == 0, node.output()


async def test_dev_starts_from_an_empty_data_dir_and_again_on_the_same_one(data_dir: Path, tmp_path: Path) -> None:
    assert not await trio.Path(data_dir).exists()
    started = trio.current_time()
    node = await start_dev(data_dir, free_port(), None, tmp_path / "dev.log")
    first_start = trio.current_time() - started
    code, took = await stop(node)
    assert code == 0, node.output()
    assert not EmbeddedPostgres(data_dir / "pg").is_running()  # stopped with the node

    started = trio.current_time()
    node = await start_dev(data_dir, free_port(), None, tmp_path / "dev.log")
    second_start = trio.current_time() - started
    code, _ = await stop(node)
    print(f"dev: first start {first_start:.2f} s (initdb), restart {second_start:.2f} s, idle stop {took:.2f} s")
    assert code == 0, node.output()


def _alive(pid: int) -> bool:
    """Running, not merely a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


async def _gone(pid: int) -> None:
    """Return once ``pid`` has exited (a pidfd turns readable then; the caller bounds the wait)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


async def test_after_sigkill_the_embedded_servers_die_too_and_the_next_start_recovers(
    data_dir: Path, tmp_path: Path
) -> None:
    node = await start_dev(data_dir, free_port(), None, tmp_path / "dev.log")
    redis_pid = int((data_dir / "redis" / "redis.pid").read_text())
    postmaster_pid = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    assert _alive(redis_pid) and _alive(postmaster_pid)
    await stop(node, signal.SIGKILL)
    # Both run in their own sessions (a Ctrl-C is the node's to handle), with the parent-death signal.
    with trio.fail_after(5):
        await _gone(redis_pid)
    with trio.fail_after(15):  # PostgreSQL's fast shutdown, then it exits
        await _gone(postmaster_pid)

    node = await start_dev(data_dir, free_port(), None, tmp_path / "dev.log")
    async with httpx.AsyncClient(timeout=5) as http:
        ready = (await http.get(node.base_url + "/readyz")).json()
    assert ready["ready"] is True
    code, _ = await stop(node)
    assert code == 0, node.output()
    assert not EmbeddedPostgres(data_dir / "pg").is_running()
