"""``actor-admin serve`` started before its database (a reboot, a failover): a real process pointed at a
PostgreSQL port where nothing listens waits with progress lines instead of exiting, answers ``/healthz``
200 and a 503 ``/readyz`` naming postgres, and comes up by itself once PostgreSQL appears on that port
(docs/commands-and-settings.md#serve, docs/http-api.md#starting). SIGTERM while it waits exits 0 at once.

PostgreSQL "appears" as the test's proxy starting to listen on the port, forwarding to the test server.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import trio

from tests._pgproxy import PgProxy
from tests.api.conftest import free_port

from ._serve import START_TIMEOUT_S, poll_until, serve_env, wait_http

#: How long after PostgreSQL appears the node must be ready: the longest pause between attempts (5 s,
#: plus its jitter) and the start itself, with slack for a shared machine.
READY_AFTER_S = 30.0
#: How long SIGTERM may take while the node waits (nothing to stop yet).
PROMPT_EXIT_S = 5.0


WaitingNode = tuple[trio.Process, str, Path, PgProxy]


@pytest.fixture
async def waiting_node(pg_dsn: str, redis_url: str, tmp_path: Path) -> AsyncIterator[WaitingNode]:
    proxy = PgProxy(pg_dsn, free_port())  # its port: nothing listens there yet
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "actor_admin", "serve"],
            env=serve_env(proxy.dsn, redis_url, port, tmp_path),
            cwd=tmp_path,
            stdout=out,
            stderr=out,
        )
        try:
            yield process, f"http://127.0.0.1:{port}", log, proxy
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def _log_says(log: Path, text: str) -> bool:
    return text in await trio.Path(log).read_text(errors="replace")


async def test_serve_waits_for_postgres_then_comes_up_by_itself(
    waiting_node: WaitingNode, nursery: trio.Nursery
) -> None:
    process, base_url, log, proxy = waiting_node
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as http:
        with trio.fail_after(START_TIMEOUT_S):
            await wait_http(base_url + "/healthz")
            await poll_until(lambda: _log_says(log, "waiting for PostgreSQL"))

        readyz = await http.get("/readyz")
        assert readyz.status_code == 503
        body = readyz.json()
        assert body["ready"] is False and body["failing"][0] == "postgres"
        assert "PostgreSQL" in body["reasons"]["postgres"] and body["dependencies"]["postgres"]["ok"] is False
        assert body["dependencies"]["redis"]["ok"] is True
        assert body["starting"]["waiting_for"] == "postgres" and body["starting"]["attempts"] >= 1
        other = await http.get("/status")
        assert other.status_code == 503 and other.json()["error"]["code"] == "starting"
        posted = await http.post("/webhook/yclients", content=b"x" * 100_000)  # a body: read, then answered
        assert posted.status_code == 503 and posted.headers["retry-after"] == "5"
        assert (await http.get("/healthz")).json() == {"ok": True}  # the same keep-alive connection
        assert process.returncode is None  # waiting, not exited
        text = await trio.Path(log).read_text(errors="replace")
        assert "actor-admin doctor" in text and "next try in" in text  # says how to check, and when

        await nursery.start(proxy.serve)  # PostgreSQL appears on the port
        with trio.fail_after(READY_AFTER_S):
            await wait_http(base_url + "/readyz")
        assert (await http.get("/status")).status_code == 200

    process.send_signal(signal.SIGTERM)
    with trio.fail_after(30):
        assert await process.wait() == 0


async def test_sigterm_while_waiting_for_postgres_exits_0_promptly(
    waiting_node: WaitingNode,
) -> None:
    process, base_url, log, _ = waiting_node
    with trio.fail_after(START_TIMEOUT_S):
        await wait_http(base_url + "/healthz")
        await poll_until(lambda: _log_says(log, "waiting for PostgreSQL"))

    process.send_signal(signal.SIGTERM)
    with trio.fail_after(PROMPT_EXIT_S):
        assert await process.wait() == 0
