"""Do restores scale out? Three nodes restoring 3,000 salons vs one node restoring 1,000.

Real nodes in this one process (``open_services`` as production wires them, each with its own
PostgreSQL pool and ownership :class:`~actor_admin.cluster.Keeper`, no Redis), real company actors
and one in-process WhatsApp simulator shared by the nodes. Every salon has a device linked on the
simulator and its credentials stored encrypted; the nodes start together and the clock runs until the
simulator holds one live connection per salon (each actor loaded and decrypted its credentials,
logged in, and stored the connection with its fence). ``run(results)`` adds:

* ``restore_1_node_s`` — one node, ``SALONS_PER_NODE`` salons;
* ``restore_3_nodes_s`` — three nodes, three times as many;
* ``cluster_restore_ratio`` — the second over the first: ≈ 1 when restores scale out;
* ``restore_1_node_cpu_ms_per_salon``, ``restore_3_nodes_cpu_ms_per_salon`` — this process's CPU
  time per restored salon: the three nodes share one process (one core) here, so once they need more
  than it gives, the ratio measures this process's core rather than the cluster.

Each node starts ``RESTORE_PER_SECOND`` actors a second (the pacing that protects WhatsApp), so the
floor is ``SALONS_PER_NODE / RESTORE_PER_SECOND`` plus two heartbeats before the first plan; above
that, the ratio shows what the nodes' shared PostgreSQL and — here — the one shared CPU cost.
Needs ``DATABASE_URL`` (an admin DSN: a throwaway database is created on it).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import attrs
import trio
import trio_asyncio

from actor_admin.doubles.whatsapp import SimulatorCore, SimulatorTransport
from actor_admin.node import CollectorPolicy, Parts, open_services
from actor_admin.session import CredsUpdated
from actor_admin.store import Keyring, Member, Store
from tests._pg import TEST_CREDENTIALS_KEY
from tests.api.conftest import free_port, node_settings

from ._cluster_db import StatementCounter, add_salons, bench_database, counting_store

SALONS_PER_NODE = 1_000
#: Faster than the default 20 a second, to keep the run short (1,000 salons in 20 s, not 50 s)
#: and to load the machinery harder; the ratio is about scaling, not the pace.
RESTORE_PER_SECOND = 50.0


class _Sink:
    """Catches the credentials the simulator hands a newly linked device."""

    def __init__(self) -> None:
        self.credentials: bytes | None = None

    def event(self, event: Any) -> None:
        if isinstance(event, CredsUpdated):
            self.credentials = event.credentials

    def message(self, tag: int, event: Any) -> bool:
        return True

    def keepalive(self, ok: bool) -> None:
        pass

    def ended(self, event: Any) -> None:
        pass


async def _link(store: Store, core: SimulatorCore, salon_ids: range) -> None:
    """A linked device per salon on ``core`` and its credentials stored, as onboarding leaves them."""
    limit = trio.CapacityLimiter(8)

    async def save(salon_id: int, credentials: bytes) -> None:
        async with limit:
            await store.credentials.save(salon_id, credentials)

    async with trio.open_nursery() as nursery:
        for salon_id in salon_ids:
            sink = _Sink()
            core.accept(salon_id, None, sink, qr_at_once=True)
            qr = core.qr_for(salon_id)
            assert qr is not None
            core.scan(qr, f"7900{salon_id:07d}")
            assert sink.credentials is not None
            nursery.start_soon(save, salon_id, sink.credentials)

    async def active(conn: Any) -> None:  # already activated: a restore only reconnects
        await conn.execute("UPDATE companies SET integration_status = 'active'")

    await store._db.run(active)


async def _reset(store: Store) -> None:
    async def work(conn: Any) -> None:
        await conn.execute(
            "DELETE FROM salon_owners; DELETE FROM cluster_nodes; UPDATE companies SET whatsapp_connected = false"
        )

    await store._db.run(work)


async def _restore(
    dsn: str,
    core: SimulatorCore,
    nodes: int,
    salons: int,
    *,
    per_second: float = RESTORE_PER_SECOND,
    collector: Callable[[], CollectorPolicy | None] = lambda: None,
    within_s: float | None = None,
) -> tuple[float, float]:
    """Start ``nodes`` nodes together, each restoring ``per_second`` salons a second; seconds until
    ``salons`` salons are connected, and this process's CPU milliseconds per salon meanwhile.
    ``collector`` makes each node's collector policy (None: the heap is not frozen, as in tests)."""
    async with AsyncExitStack() as stack:
        nursery = await stack.enter_async_context(trio.open_nursery())
        stack.callback(nursery.cancel_scope.cancel)
        keepers = []
        for n in range(nodes):
            settings = node_settings(free_port(), NODE_ID=f"restore-{n}")
            cluster = attrs.evolve(settings.cluster, restore_per_second=per_second)
            settings = attrs.evolve(settings, cluster=cluster)
            store = await Store.open(dsn, credentials_keys=Keyring(TEST_CREDENTIALS_KEY))
            stack.push_async_callback(store.aclose)
            member = Member.new(f"restore-{n}", "bench")
            parts = Parts(
                store=store, transport=SimulatorTransport(core), simulator=core, member=member, collector=collector()
            )
            await stack.enter_async_context(open_services(settings, parts))
            assert parts.keeper is not None
            keepers.append(parts.keeper)
        started, cpu = trio.current_time(), time.process_time()
        for keeper in keepers:
            nursery.start_soon(keeper.run)
        with trio.fail_after(within_s or 10 + 3 * salons / per_second + salons * 0.05):
            while core.stats()["live_sessions"] < salons:  # noqa: ASYNC110 - the simulator offers no event per count
                await trio.sleep(0.05)
        took, cpu = trio.current_time() - started, time.process_time() - cpu
        stats = core.stats()
        assert stats["replaced_total"] == 0 and stats["max_live_per_device"] == 1, stats
        for keeper in keepers:
            keeper.leaving = True  # the process ends: stop without handing anything over
        nursery.cancel_scope.cancel()
    return took, cpu / salons * 1000


async def _measure(dsn: str) -> tuple[tuple[float, float], tuple[float, float]]:
    async with trio_asyncio.open_loop():
        async with counting_store(dsn, StatementCounter()) as store:
            await add_salons(store, 1, 3 * SALONS_PER_NODE)
            one_core, three_core = SimulatorCore(), SimulatorCore()
            await _link(store, one_core, range(1, SALONS_PER_NODE + 1))
            one = await _restore(dsn, one_core, 1, SALONS_PER_NODE)
            print(f"  1 node, {SALONS_PER_NODE} salons: {one[0]:.1f} s, {one[1]:.1f} ms CPU each",
                  file=sys.stderr)
            await _reset(store)
            await _link(store, three_core, range(1, 3 * SALONS_PER_NODE + 1))
            three = await _restore(dsn, three_core, 3, 3 * SALONS_PER_NODE)
            print(f"  3 nodes, {3 * SALONS_PER_NODE} salons: {three[0]:.1f} s, {three[1]:.1f} ms CPU each",
                  file=sys.stderr)
            return one, three


def run(results: dict[str, float]) -> None:
    """``python -m tests.bench --only restore``."""
    with bench_database() as dsn:
        if dsn is None:
            print("  bench_restore: DATABASE_URL is not set; skipped", file=sys.stderr)
            return
        one, three = trio.run(_measure, dsn)
    results["restore_1_node_s"], results["restore_1_node_cpu_ms_per_salon"] = one
    results["restore_3_nodes_s"], results["restore_3_nodes_cpu_ms_per_salon"] = three
    results["cluster_restore_ratio"] = three[0] / one[0]
