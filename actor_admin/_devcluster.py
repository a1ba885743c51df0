"""``actor-admin dev --nodes N``: a cluster of N dev nodes on one machine (docs/cluster.md,
docs/commands-and-settings.md#several-nodes-in-dev).

This process starts one embedded PostgreSQL and Redis (or uses ``DATABASE_URL``/``REDIS_URL``),
migrates once, serves the WhatsApp simulator on ``PORT+N`` and the fake YClients on ``PORT+N+1``,
and runs N node processes — ``actor-admin dev`` with those URLs and ``NODE_ID=dev-1..N`` — on
``PORT`` … ``PORT+N-1``.

The two doubles are tasks of this process, not processes of their own: they must outlive any node a
developer kills (that is the point of the command), they hold state only in memory, and one trio
process serving both costs less than two interpreters on a small machine. The nodes are processes
because a node is what one kills with ``kill -9`` or stops with SIGTERM to watch failover and
handover. Each node is started with the parent-death signal set, so no node outlives this process
even when it is killed outright; SIGINT/SIGTERM here stops every node within the shutdown deadline
(SIGKILL after it) and exits 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from contextlib import AsyncExitStack

import attrs
import trio
import trio_asyncio

from actor_admin._children import die_with_parent
from actor_admin.config import Settings
from actor_admin.console import CommandError, say
from actor_admin.doubles.whatsapp import serve_simulator
from actor_admin.doubles.yclients import serve_fake_yclients
from actor_admin.node import migrate_now, open_databases, until_signal
from actor_admin.store import MigrationError, StoreError

MAX_NODES = 20
#: What the parent gives a node beyond its own shutdown deadline before SIGKILL.
KILL_GRACE_S = 3.0


@attrs.frozen
class DevNode:
    """One node of the dev cluster, as it is started."""

    node_id: str
    port: int
    url: str


@attrs.frozen
class DevCluster:
    """The addresses of a dev cluster: its nodes and the two doubles they share."""

    nodes: tuple[DevNode, ...]
    simulator_url: str
    fake_yclients_url: str
    simulator_port: int
    fake_yclients_port: int


def plan_cluster(settings: Settings, count: int) -> DevCluster:
    """Node ids and ports: nodes on ``PORT`` … ``PORT+N-1``, then the simulator, then the fake."""
    if not 1 <= count <= MAX_NODES:
        raise CommandError(f"actor-admin dev: --nodes must be between 1 and {MAX_NODES}, got {count}")
    if settings.port == 0:
        raise CommandError("actor-admin dev --nodes: give a PORT (the nodes listen on PORT, PORT+1, …), not 0")
    last = settings.port + count + 1
    if last > 65535:
        raise CommandError(f"actor-admin dev --nodes {count}: ports {settings.port}…{last} do not fit below 65536")
    host = settings.host
    nodes = tuple(
        DevNode(f"dev-{i + 1}", settings.port + i, f"http://{host}:{settings.port + i}") for i in range(count)
    )
    sim_port, fake_port = settings.port + count, settings.port + count + 1
    return DevCluster(nodes, f"http://{host}:{sim_port}", f"http://{host}:{fake_port}", sim_port, fake_port)


def node_environment(
    environ: Mapping[str, str],
    settings: Settings,
    cluster: DevCluster,
    node: DevNode,
    *,
    database_url: str,
    redis_url: str,
) -> dict[str, str]:
    """The environment of one node: the caller's, with the shared databases and doubles and its own id and port.

    The dev secrets come from the same ``DATA_DIR/dev.env`` (or the same environment), so every node
    verifies the others' tokens and decrypts the same credentials.
    """
    env = dict(environ)
    env.update(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "WHATSAPP_TRANSPORT": "simulator",
            "WHATSAPP_SIMULATOR_URL": cluster.simulator_url,
            "YCLIENTS_API_URL": cluster.fake_yclients_url,
            "NODE_ID": node.node_id,
            "HOST": settings.host,
            "PORT": str(node.port),
            "DATA_DIR": str(settings.data_dir.absolute()),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


class _NodeProcess:
    """A running node: its process, and an event set once it has exited and been reaped."""

    def __init__(self, node: DevNode, env: dict[str, str]) -> None:
        self.node = node
        # Forked from trio's own thread, which lives as long as this process (the signal's condition).
        self.process = subprocess.Popen(
            [sys.executable, "-m", "actor_admin", "dev"], env=env, preexec_fn=die_with_parent(signal.SIGTERM)
        )
        self.exited = trio.Event()

    async def watch(self, stopping: trio.Event) -> None:
        fd = os.pidfd_open(self.process.pid)
        try:
            await trio.lowlevel.wait_readable(fd)
        finally:
            os.close(fd)
        code = self.process.wait()
        self.exited.set()
        if not stopping.is_set():
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            say(f"node {self.node.node_id} ({self.node.url}) stopped: {how}; the others take over its salons")

    def send(self, signum: int) -> None:
        if self.process.returncode is None:
            try:
                self.process.send_signal(signum)
            except ProcessLookupError:
                pass


async def run_cluster(settings: Settings, environ: Mapping[str, str], count: int) -> int:
    """Run the dev cluster until SIGINT/SIGTERM; stop every node; return 0."""
    cluster = plan_cluster(settings, count)
    await until_signal(lambda stop: _run(settings, environ, cluster, stop))
    say("stopped")
    return 0


async def _run(settings: Settings, environ: Mapping[str, str], cluster: DevCluster, stop: trio.Event) -> int:
    async with AsyncExitStack() as stack:
        database_url, redis_url = await open_databases(settings, stack)
        async with trio_asyncio.open_loop():
            try:
                await migrate_now(database_url)  # once, before the nodes start (each then finds none pending)
            except (MigrationError, StoreError) as exc:
                raise CommandError(f"actor-admin dev: {exc}") from None
        doubles_done = trio.Event()  # the doubles serve until the last node has stopped
        async with trio.open_nursery() as nursery:
            host = settings.host
            await nursery.start(
                lambda task_status: serve_simulator(
                    host, cluster.simulator_port, shutdown_trigger=doubles_done.wait, task_status=task_status
                )
            )
            await nursery.start(
                lambda task_status: serve_fake_yclients(
                    host,
                    cluster.fake_yclients_port,
                    settings,
                    shutdown_trigger=doubles_done.wait,
                    task_status=task_status,
                )
            )
            say(f"WhatsApp simulator: {cluster.simulator_url}/  (control API; /stats counts connections)")
            say(f"fake YClients:      {cluster.fake_yclients_url}/  (install a salon: /_fake/install?salon_id=1)")
            processes = []
            for node in cluster.nodes:
                env = node_environment(environ, settings, cluster, node, database_url=database_url, redis_url=redis_url)
                process = _NodeProcess(node, env)
                processes.append(process)
                nursery.start_soon(process.watch, stop)
                say(f"node {node.node_id}: {node.url}/  (pid {process.process.pid})")
            say(f"{len(processes)} nodes share one cluster; /status on any of them shows every node and salon")
            await stop.wait()
            say("stopping every node …")
            await _stop_all(processes, settings.shutdown_deadline_s)
            doubles_done.set()
            nursery.cancel_scope.cancel()
    return 0


async def _stop_all(processes: list[_NodeProcess], deadline_s: float) -> None:
    """SIGTERM every node (they hand over and leave), wait up to the deadline, then SIGKILL the rest."""
    for process in processes:
        process.send(signal.SIGTERM)
    with trio.move_on_after(deadline_s + KILL_GRACE_S):
        for process in processes:
            await process.exited.wait()
    for process in processes:
        if not process.exited.is_set():
            say(f"node {process.node.node_id} did not stop in time; killing it")
            process.send(signal.SIGKILL)
    with trio.move_on_after(KILL_GRACE_S):
        for process in processes:
            await process.exited.wait()
