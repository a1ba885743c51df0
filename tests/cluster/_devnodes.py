"""Shared machinery for the multi-process tests that run ``actor-admin dev --nodes N`` on loopback.

The command's own simulator and fake YClients, N node processes on the test's PostgreSQL database and
a Redis of their own: ``dev``'s embedded one in the temporary DATA_DIR, or one the test starts and
restarts (:class:`OwnRedis`); either way the nodes' Redis keys carry no per-test prefix. Salons are
installed through the fake marketplace (optionally) and linked through the command's simulator — a QR
scanned over its control API, exactly what a phone does — and their credentials stored, so the nodes'
keepers claim and connect them (docs/cluster.md).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import attrs
import httpx
import pytest
import trio
import trio_asyncio

from actor_admin._devenv import ensure_dev_secrets
from actor_admin.cluster import EmbeddedRedis, place
from actor_admin.session import CredsUpdated, QrIssued, TransportEvent
from actor_admin.store import Keyring, Store
from actor_admin.whatsapp import LinkSpec, NetworkSimulatorTransport
from tests.ops._serve import poll_until, wait_http

SHUTDOWN_DEADLINE_S = 10.0
START_TIMEOUT_S = 60.0
NODE_LINE = re.compile(r"^node (dev-\d+): (http://\S+)/\s+\(pid (\d+)\)$", re.MULTILINE)


def consecutive_free_ports(count: int) -> int:
    """A base port whose next ``count`` ports are all free on 127.0.0.1 now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no block of free ports")


@attrs.define
class OwnRedis:
    """A redis-server the test owns (the embedded one ``dev`` would run), so it can stop and start it.

    It keeps nothing on disk: started again, it is empty, on the same port (the nodes keep their URL).
    """

    server: EmbeddedRedis
    url: str = ""

    async def start(self) -> None:
        url = await trio.to_thread.run_sync(self.server.start)
        assert not self.url or url == self.url, f"Redis came back on {url}, not {self.url}: its port was taken"
        self.url = url

    async def stop(self) -> None:
        await trio.to_thread.run_sync(self.server.stop)


@contextmanager
def own_redis_server(data_dir: Path) -> Iterator[OwnRedis]:
    """A running :class:`OwnRedis` with its files in ``data_dir/test-redis``; stopped on the way out."""
    redis = OwnRedis(EmbeddedRedis(data_dir / "test-redis"))
    redis.url = redis.server.start()
    try:
        yield redis
    finally:
        redis.server.stop()


@attrs.define
class DevCluster:
    process: trio.Process
    log: Path
    secrets: dict[str, str]
    simulator: str = ""
    fake_yclients: str = ""
    nodes: dict[str, tuple[str, int]] = attrs.Factory(dict)  # node id → (base URL, pid)
    redis: OwnRedis | None = None  # the test's own Redis, when it passed one

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> list[int]:
        return [pid for _, pid in self.nodes.values()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def exited(pid: int) -> None:
    """Wait until ``pid`` (not our child: ``dev``'s) has exited and been reaped."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # already gone
    try:
        await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


@contextmanager
def dev_data_dir() -> Iterator[Path]:
    # Not tmp_path (mode 0700, and reset by other pytest runs): the embedded servers may run as another user.
    root = Path(tempfile.mkdtemp(prefix="aa-dev-nodes-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@asynccontextmanager
async def dev_cluster(
    data_dir: Path, pg_dsn: str, nodes: int, ttl_s: float, redis: OwnRedis | None = None
) -> AsyncIterator[DevCluster]:
    """``actor-admin dev --nodes N`` running and ready; every process it started killed on the way out.

    With ``redis``, the nodes use that server (``REDIS_URL``) instead of one ``dev`` embeds.
    """
    port = consecutive_free_ports(nodes + 2)
    secrets = ensure_dev_secrets(data_dir)
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "PUBLIC_URL", "NODE_ID"}}
    env.update(
        {
            "DATA_DIR": str(data_dir),
            "DATABASE_URL": pg_dsn,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "CLUSTER_TTL": str(ttl_s),
            "SHUTDOWN_DEADLINE": str(SHUTDOWN_DEADLINE_S),
            "LOG_LEVEL": "warning",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if redis is not None:
        env["REDIS_URL"] = redis.url
    log = data_dir / "dev.log"
    with log.open("ab") as handle:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "actor_admin", "dev", "--nodes", str(nodes)],
            env=env,
            cwd=data_dir,
            stdout=handle,
            stderr=handle,
        )
    dev = DevCluster(
        process,
        log,
        secrets,
        simulator=f"http://127.0.0.1:{port + nodes}",
        fake_yclients=f"http://127.0.0.1:{port + nodes + 1}",
        redis=redis,
    )
    try:
        with trio.fail_after(START_TIMEOUT_S):
            while len(dev.nodes) < nodes:
                assert process.poll() is None, dev.output()
                dev.nodes = {m[1]: (m[2], int(m[3])) for m in NODE_LINE.finditer(dev.output())}
                await trio.sleep(0.1)
            assert [url for url, _ in dev.nodes.values()] == [f"http://127.0.0.1:{port + i}" for i in range(nodes)]
            await wait_http(dev.simulator + "/stats")
            for url, _ in dev.nodes.values():
                await wait_http(url + "/readyz")
        yield dev
    finally:
        for pid in [process.pid, *dev.pids()]:
            if alive(pid):
                os.kill(pid, signal.SIGCONT)  # a stopped process takes SIGKILL too, but be explicit
                os.kill(pid, signal.SIGKILL)
        await process.wait()
        if redis is None:
            stop_orphaned_redis(data_dir / "redis")


def stop_orphaned_redis(directory: Path) -> None:
    """Kill the embedded Redis ``dev`` left in ``directory``: it runs in a session of its own (so it
    outlives a node's shutdown), and ``dev`` killed with SIGKILL cannot stop it."""
    try:
        pid = int((directory / "redis.pid").read_text())
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return  # stopped by dev, or never started
    if b"redis-server" in command:
        os.kill(pid, signal.SIGKILL)


async def link_salons(
    dev: DevCluster,
    sim: httpx.AsyncClient,
    dsn: str,
    salons: set[int],
    at_once: int = 1,
    *,
    via_marketplace: bool = False,
) -> None:
    """Link a phone to each salon through ``dev``'s simulator (``at_once`` at a time) and store its
    registration and credentials, as onboarding does; the keepers then claim and connect them.

    With ``via_marketplace`` the salon is first installed as YClients does it (:func:`install`);
    otherwise its registration is written straight into the store. Either way it starts as
    ``pending_whatsapp``, so its first connection queues its activation call.
    """
    store = await Store.open(dsn, credentials_keys=Keyring(base64.b64decode(dev.secrets["CREDENTIALS_KEY"])))
    transport = NetworkSimulatorTransport(dev.simulator)
    limit = trio.CapacityLimiter(at_once)
    node_urls = [url for url, _ in dev.nodes.values()]

    async def link_one(http: httpx.AsyncClient, salon_id: int) -> None:
        async with limit:
            if via_marketplace:
                await install(http, dev.fake_yclients, node_urls[salon_id % len(node_urls)], salon_id)
            else:
                await store.companies.upsert_registration(salon_id)
            credentials = await link(sim, transport, salon_id)
            await store.credentials.save(salon_id, credentials, transport="simulator")

    try:
        async with httpx.AsyncClient(timeout=10) as http, trio.open_nursery() as nursery:
            for salon_id in sorted(salons):
                nursery.start_soon(link_one, http, salon_id)
    finally:
        await store.aclose()


async def install(http: httpx.AsyncClient, fake_yclients: str, node_url: str, salon_id: int) -> None:
    """Install the app in ``salon_id`` as YClients does: the fake marketplace's signed redirect, followed
    to ``node_url`` (any node: a load balancer picks one), which registers the salon and answers with
    the onboarding page's address."""
    answer = await http.get(f"{fake_yclients}/_fake/install", params={"salon_id": salon_id})
    assert answer.status_code == 302, answer.text
    redirect = httpx.URL(answer.headers["location"])
    node = httpx.URL(node_url)
    answer = await http.get(redirect.copy_with(host=node.host, port=node.port))
    assert answer.status_code == 302 and "#token=" in answer.headers.get("location", ""), answer.text


def cluster_fixture(nodes: int, ttl_s: float, *, own_redis: bool = False) -> Any:
    """A test module's ``cluster`` fixture: ``dev --nodes`` in a fresh data directory, on the test's database.

    With ``own_redis`` the nodes use a Redis the test owns (``cluster.redis``), which it may restart.
    """

    @pytest.fixture
    async def cluster(pg_dsn: str) -> AsyncIterator[DevCluster]:
        with dev_data_dir() as root:
            if not own_redis:
                async with dev_cluster(root, pg_dsn, nodes, ttl_s) as dev:
                    yield dev
                return
            with own_redis_server(root) as redis:
                async with dev_cluster(root, pg_dsn, nodes, ttl_s, redis) as dev:
                    yield dev

    return cluster


def node_environment(pid: int) -> dict[str, str]:
    """A running node's environment, to start it again as ``dev`` started it."""
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


async def restart_node(dev: DevCluster, node_id: str, env: dict[str, str], started: list[trio.Process]) -> None:
    """Start ``node_id`` again (as the caller's child, added to ``started`` for its teardown), ready."""
    url, _ = dev.nodes[node_id]
    with (dev.log.parent / f"{node_id}.restarted.log").open("ab") as handle:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "actor_admin", "dev"], env=env, cwd=dev.log.parent, stdout=handle, stderr=handle
        )
    started.append(process)
    dev.nodes[node_id] = (url, process.pid)
    with trio.fail_after(30):
        await wait_http(url + "/readyz")


def phone_of(salon_id: int) -> str:
    """The phone the tests link to ``salon_id``."""
    return f"7900100{salon_id:04d}"


async def link(sim: httpx.AsyncClient, transport: NetworkSimulatorTransport, salon_id: int) -> bytes:
    """Link a phone to ``salon_id`` as a person would: a QR, scanned; the device's credentials."""
    events: list[TransportEvent] = []
    changed = trio.Event()

    def deliver(event: TransportEvent) -> None:
        nonlocal changed
        events.append(event)
        changed.set()
        changed = trio.Event()

    async def first(kind: type) -> Any:
        while not (found := [e for e in events if isinstance(e, kind)]):
            await changed.wait()
        return found[0]

    async with trio.open_nursery() as nursery:
        await transport.open(nursery, LinkSpec(salon_id=salon_id, deliver=deliver))
        qr = await first(QrIssued)
        answer = await sim.post("/scan", json={"qr": qr.code, "phone": phone_of(salon_id)})
        assert answer.status_code == 200, answer.text
        credentials: bytes = (await first(CredsUpdated)).credentials
        nursery.cancel_scope.cancel()
    return credentials


async def connected_where(dev: DevCluster, node_ids: list[str]) -> dict[int, str]:
    """Salon → the node among ``node_ids`` that owns it and shows it connected in its ``/status``.

    A node shows its own actors from memory, but a salon it has just claimed and not yet started as
    its last owner stored it (possibly "connected"): callers also count the simulator's live
    connections, which a killed node's salons leave at once.
    """
    headers = {"Authorization": f"Bearer {dev.secrets['ADMIN_TOKEN']}", "Accept": "application/json"}
    where: dict[int, str] = {}
    async with httpx.AsyncClient(timeout=5, headers=headers) as http:
        for node_id in node_ids:
            url, _ = dev.nodes[node_id]
            body = (await http.get(url + "/status")).json()
            for salon in body.get("companies", []):
                if salon["node"] == node_id and salon["state"] == "connected":
                    where.setdefault(salon["salon_id"], node_id)
    return where


async def sim_stats(sim: httpx.AsyncClient) -> dict[str, int]:
    stats: dict[str, int] = (await sim.get("/stats")).json()
    return stats


async def all_connected(
    dev: DevCluster, sim: httpx.AsyncClient, node_ids: list[str], salons: set[int]
) -> dict[int, str]:
    """Wait until every salon is owned by one of ``node_ids`` and connected, each device once."""
    where: dict[int, str] = {}

    async def done() -> bool:
        nonlocal where
        where = await connected_where(dev, node_ids)
        return set(where) >= salons and (await sim_stats(sim))["live_sessions"] == len(salons)

    await poll_until(done)
    return where


async def settled(dev: DevCluster, sim: httpx.AsyncClient, nodes: list[str], salons: set[int]) -> dict[int, str]:
    """Wait until every salon is connected once, on the node placement gives it among ``nodes``."""
    wanted = {salon_id: place(salon_id, nodes) for salon_id in salons}
    where: dict[int, str] = {}

    async def done() -> bool:
        nonlocal where
        where = await connected_where(dev, nodes)
        return where == wanted and (await sim_stats(sim))["live_sessions"] == len(salons)

    with trio.fail_after(60):  # the nodes hand salons over a few per planning round
        await poll_until(done)
    return where


async def company_fields(dsn: str, salons: set[int], column: str) -> dict[int, Any]:
    """Each salon's ``companies.<column>``, read straight from PostgreSQL."""
    assert column.isidentifier(), column
    connection = await trio_asyncio.aio_as_trio(asyncpg.connect)(dsn)
    try:
        rows = await trio_asyncio.aio_as_trio(connection.fetch)(
            f"SELECT salon_id, {column} AS value FROM companies WHERE salon_id = ANY($1::bigint[])", sorted(salons)
        )
    finally:
        await trio_asyncio.aio_as_trio(connection.close)()
    return {int(row["salon_id"]): row["value"] for row in rows}


async def connected_since(dsn: str, salons: set[int]) -> dict[int, datetime]:
    """Each salon's ``whatsapp_connected_at``: every connection (a reconnect too) stamps it anew."""
    return await company_fields(dsn, salons, "whatsapp_connected_at")


async def placed_as(dev: DevCluster, nodes: list[str], placed: dict[int, str]) -> bool:
    """Is every salon connected on the node ``placed`` names, and no other?"""
    return await connected_where(dev, nodes) == placed
