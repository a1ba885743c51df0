"""``actor-admin dev --nodes 3`` as a developer runs it, then a node killed and another stopped.

Real processes on loopback: the command's own simulator and fake YClients, three node processes on
the test's PostgreSQL database (an embedded Redis in the temporary DATA_DIR: the nodes' Redis keys
carry no per-test prefix). Salons are linked through the command's simulator — a QR scanned over
its control API, exactly what a phone does — and their credentials stored, so the nodes' keepers
claim and connect them from stored credentials (docs/cluster.md). Then:

* ``kill -9`` of the node owning the most salons: each of them is connected again on a survivor
  within the TTL + 5 s (read from the survivors' ``/status``), with no connection replaced;
* SIGTERM of a second node: it hands its salons over with no connection replaced and exits 0;
* SIGTERM of ``dev``: every node is gone and ``dev`` exits 0.
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
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from actor_admin._devenv import ensure_dev_secrets
from actor_admin.session import CredsUpdated, QrIssued, TransportEvent
from actor_admin.store import Keyring, Store
from actor_admin.whatsapp import LinkSpec, NetworkSimulatorTransport
from tests.ops._serve import poll_until, wait_http

NODES = 3
SALONS = 12
TTL_S = 4.0  # CLUSTER_TTL for this test: the failover bound is TTL + 5 s
SHUTDOWN_DEADLINE_S = 10.0
START_TIMEOUT_S = 60.0
NODE_LINE = re.compile(r"^node (dev-\d+): (http://\S+)/\s+\(pid (\d+)\)$", re.MULTILINE)


def _consecutive_free_ports(count: int) -> int:
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
class DevCluster:
    process: trio.Process
    log: Path
    secrets: dict[str, str]
    simulator: str = ""
    nodes: dict[str, tuple[str, int]] = attrs.Factory(dict)  # node id → (base URL, pid)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> list[int]:
        return [pid for _, pid in self.nodes.values()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _exited(pid: int) -> None:
    """Wait until ``pid`` (not our child: ``dev``'s) has exited and been reaped."""
    fd = os.pidfd_open(pid)
    try:
        await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not tmp_path (mode 0700, and reset by other pytest runs): the embedded servers may run as another user.
    root = Path(tempfile.mkdtemp(prefix="aa-dev-nodes-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def cluster(data_dir: Path, pg_dsn: str) -> AsyncIterator[DevCluster]:
    port = _consecutive_free_ports(NODES + 2)
    secrets = ensure_dev_secrets(data_dir)
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "PUBLIC_URL", "NODE_ID"}}
    env.update(
        {
            "DATA_DIR": str(data_dir),
            "DATABASE_URL": pg_dsn,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "CLUSTER_TTL": str(TTL_S),
            "SHUTDOWN_DEADLINE": str(SHUTDOWN_DEADLINE_S),
            "LOG_LEVEL": "warning",
            "PYTHONUNBUFFERED": "1",
        }
    )
    log = data_dir / "dev.log"
    with log.open("ab") as handle:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "actor_admin", "dev", "--nodes", str(NODES)],
            env=env,
            cwd=data_dir,
            stdout=handle,
            stderr=handle,
        )
    dev = DevCluster(process, log, secrets, simulator=f"http://127.0.0.1:{port + NODES}")
    try:
        with trio.fail_after(START_TIMEOUT_S):
            while len(dev.nodes) < NODES:
                assert process.poll() is None, dev.output()
                dev.nodes = {m[1]: (m[2], int(m[3])) for m in NODE_LINE.finditer(dev.output())}
                await trio.sleep(0.1)
            assert [url for url, _ in dev.nodes.values()] == [f"http://127.0.0.1:{port + i}" for i in range(NODES)]
            await wait_http(dev.simulator + "/stats")
            for url, _ in dev.nodes.values():
                await wait_http(url + "/readyz")
        yield dev
    finally:
        for pid in [process.pid, *dev.pids()]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        await process.wait()


async def _link(sim: httpx.AsyncClient, transport: NetworkSimulatorTransport, salon_id: int) -> bytes:
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
        await transport.open(nursery, LinkSpec(salon_id=salon_id, credentials=None, deliver=deliver))
        qr = await first(QrIssued)
        answer = await sim.post("/scan", json={"qr": qr.code, "phone": f"7900100{salon_id:04d}"})
        assert answer.status_code == 200, answer.text
        credentials: bytes = (await first(CredsUpdated)).credentials
        nursery.cancel_scope.cancel()
    return credentials


async def _connected_where(dev: DevCluster, node_ids: list[str]) -> dict[int, str]:
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


async def _stats(sim: httpx.AsyncClient) -> dict[str, int]:
    stats: dict[str, int] = (await sim.get("/stats")).json()
    return stats


async def _all_connected(
    dev: DevCluster, sim: httpx.AsyncClient, node_ids: list[str], salons: set[int]
) -> dict[int, str]:
    """Wait until every salon is owned by one of ``node_ids`` and connected, each device once."""
    where: dict[int, str] = {}

    async def done() -> bool:
        nonlocal where
        where = await _connected_where(dev, node_ids)
        return set(where) >= salons and (await _stats(sim))["live_sessions"] == len(salons)

    await poll_until(done)
    return where


async def test_dev_nodes_fail_over_a_killed_node_and_hand_over_a_stopped_one(
    cluster: DevCluster, pg_dsn: str, aio_loop: object
) -> None:
    dev = cluster
    salons = set(range(501, 501 + SALONS))
    key = base64.b64decode(dev.secrets["CREDENTIALS_KEY"])
    store = await Store.open(pg_dsn, credentials_keys=Keyring(key))
    transport = NetworkSimulatorTransport(dev.simulator)
    async with httpx.AsyncClient(base_url=dev.simulator, timeout=5) as sim:
        try:
            with trio.fail_after(30):
                for salon_id in sorted(salons):
                    credentials = await _link(sim, transport, salon_id)
                    await store.companies.upsert_registration(salon_id)
                    await store.credentials.save(salon_id, credentials)
        finally:
            await store.aclose()

        every_node = sorted(dev.nodes)
        with trio.fail_after(30):  # each keeper finds the new salons at its next planning round
            placed = await _all_connected(dev, sim, every_node, salons)
        assert (await _stats(sim))["live_sessions"] == SALONS
        counts = {n: sum(1 for owner in placed.values() if owner == n) for n in every_node}
        print(f"placement of {SALONS} salons over {NODES} nodes: {counts}")

        # kill -9 the node owning the most salons: the survivors take them after the TTL.
        victim = max(every_node, key=lambda n: counts[n])
        survivors = [n for n in every_node if n != victim]
        lost = {s for s, owner in placed.items() if owner == victim}
        assert lost
        killed_at = trio.current_time()
        os.kill(dev.nodes[victim][1], signal.SIGKILL)
        with trio.fail_after(TTL_S + 5 + 10):  # the bound checked below, plus slack to report the figure
            after_failover = await _all_connected(dev, sim, survivors, salons)
        failover_s = trio.current_time() - killed_at
        print(f"kill -9 {victim} ({len(lost)} salons): all connected on {survivors} after {failover_s:.2f} s")
        assert failover_s <= TTL_S + 5, failover_s
        assert all(after_failover[s] in survivors for s in lost)
        stats = await _stats(sim)
        assert stats["replaced_total"] == 0 and stats["max_live_per_device"] == 1, stats
        assert stats["live_sessions"] == SALONS, stats

        # SIGTERM a second node: it hands its salons to the last one (no connection replaced) and exits 0.
        leaving = max(survivors, key=lambda n: sum(1 for owner in after_failover.values() if owner == n))
        (last,) = [n for n in survivors if n != leaving]
        url, pid = dev.nodes[leaving]
        stopped_at = trio.current_time()
        os.kill(pid, signal.SIGTERM)
        with trio.fail_after(SHUTDOWN_DEADLINE_S + 5):
            await _exited(pid)
        exit_s = trio.current_time() - stopped_at
        with trio.fail_after(15):
            await _all_connected(dev, sim, [last], salons)
        handover_s = trio.current_time() - stopped_at
        print(f"SIGTERM {leaving}: exited after {exit_s:.2f} s; all on {last} after {handover_s:.2f} s")
        assert f"node {leaving} ({url}) stopped: exit status 0" in dev.output()
        assert exit_s < SHUTDOWN_DEADLINE_S
        stats = await _stats(sim)
        assert stats["replaced_total"] == 0 and stats["max_live_per_device"] == 1, stats
        assert stats["live_sessions"] == SALONS, stats

    # SIGTERM dev itself: every node stops, nothing is left behind, exit 0.
    dev.process.send_signal(signal.SIGTERM)
    with trio.fail_after(SHUTDOWN_DEADLINE_S + 10):
        code = await dev.process.wait()
    assert code == 0, dev.output()
    assert not [pid for pid in dev.pids() if _alive(pid)]
