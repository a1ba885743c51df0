"""Inbound throughput end to end, against the best the same PostgreSQL and Redis do with batched writes.

``run(results)`` adds:

* ``inbound_msgs_per_s`` — messages a second from the simulator handing them to the salons' links
  to every one of them stored once in PostgreSQL (fenced, as a cluster member writes) and on the
  ``actor-admin:inbound`` stream: ``INBOUND_SALONS`` connected salons (the in-process simulator,
  real clock, real store and Redis, the node's wiring) each receive ``PER_ROUND`` messages at once,
  ``ROUNDS`` times. The simulator's own bookkeeping while it hands the messages over (its lookup of
  the account's devices is a scan of all of them) runs before any actor does and is left out of the
  time; it is reported as ``inbound_simulator_s``. The probe runs with the node's garbage collector
  settings (``tune_gc``, and ``freeze_start_up`` before the salons start, as ``serve`` does).
* ``inbound_bare_msgs_per_s`` — the same number of messages written by a bare asyncio script
  (plain asyncpg and redis.asyncio, in a subprocess) in batches of ``BARE_BATCH``: one multi-row
  ``INSERT … ON CONFLICT DO NOTHING``, one pipeline of XADDs and one ``UPDATE … SET published_at``
  of the inserted ids per batch, into the same table and stream of the same servers: the same rows
  and entries ours leaves (ours also checks each salon's fence, which the bare script does not).
* ``inbound_ratio`` — the first over the second (target ≥ 0.5).
* ``inbound_bare_unmarked_msgs_per_s`` and ``inbound_ratio_unmarked`` — the same without the bare
  script's ``published_at`` update (how the ratio was measured before; ours still sets it).
* ``inbound_cpu_us_per_msg`` — the probe process's CPU time (``process_time``) while the messages
  were on their way, per message: less noisy than the rate on a shared machine.
* ``inbound_loadavg_1m`` — the machine's load when the run started (the machine is shared).

Uses ``DATABASE_URL`` (as an admin DSN: a throwaway database is made on that server) and ``REDIS_URL``
when set, else embedded servers. ``BENCH_INBOUND_OPTIONS`` (JSON, e.g. ``{"max_batch": 1000}``) tries
other :class:`~actor_admin.runtime.GroupCommitOptions` than the node's.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import asyncpg
import trio
import trio_asyncio

from actor_admin.actors import Registry, Router, SessionDeps, company_actor_factory
from actor_admin.cluster import Here, LocalBus, Location, RedisClient
from actor_admin.config import DEFAULT_GC_THRESHOLDS
from actor_admin.doubles.whatsapp import SimulatorCore, SimulatorTransport
from actor_admin.node import freeze_start_up, open_inbound_path
from actor_admin.runtime import GroupCommitOptions, open_supervisor
from actor_admin.store import Claim, EmbeddedPostgres, Keyring, Member, Store, open_store
from actor_admin.store._migrations import migrate_aio
from tests.bench._redis import bench_redis_url
from tests.bench.bench_sessions import _link_salons, _wait_connected

INBOUND_SALONS = 500
PER_ROUND = 20  # under the mailbox's 64, so a salon's burst never overflows it
ROUNDS = 3
BARE_BATCH = 500
PEER = "79990001122"
_ROOT = Path(__file__).resolve().parents[2]


def _progress(text: str) -> None:
    print(f"  inbound: {text}", file=sys.stderr, flush=True)


class _Owned:
    """Every salon owned here with the fence PostgreSQL gave it (the keeper's answer, held still)."""

    def __init__(self, fences: dict[int, int]) -> None:
        self.fences = fences
        self.refused: list[int] = []

    async def locate(self, salon_id: int) -> Location:
        await trio.lowlevel.checkpoint()
        return Here(fence=self.fences[salon_id])

    def may_connect(self, salon_id: int, fence: int) -> bool:
        return True

    async def owns(self, salon_id: int, fence: int) -> bool:
        await trio.lowlevel.checkpoint()
        return self.fences.get(salon_id) == fence

    def fenced(self, salon_id: int, fence: int) -> None:
        self.refused.append(salon_id)


async def _ours(dsn: str, redis_url: str, salons: int, per_round: int, rounds: int) -> None:
    salon_ids = range(1, salons + 1)
    gc.set_threshold(*DEFAULT_GC_THRESHOLDS)  # the node's collector settings (tune_gc)
    async with trio_asyncio.open_loop():
        async with (
            open_store(dsn, pool_size=10, credentials_keys=Keyring(os.urandom(32))) as store,
            await RedisClient.open(redis_url, prefix=f"actor-admin-bench:{secrets.token_hex(4)}:") as redis,
        ):
            companies = "INSERT INTO companies (salon_id) SELECT unnest($1::bigint[])"
            await store.messages._db.run(lambda conn: conn.execute(companies, list(salon_ids)))
            member = Member.new("bench-node", "bench")
            await store.ownership.join(member)
            fences = await store.ownership.claim(member, [Claim(s) for s in salon_ids])
            assert len(fences) == salons, fences
            core = SimulatorCore()
            await _link_salons(core, store, salon_ids)  # type: ignore[arg-type]
            options = GroupCommitOptions(**json.loads(os.environ.get("BENCH_INBOUND_OPTIONS", "{}")))
            async with open_inbound_path(store, redis, options) as inbound:
                assert inbound is not None
                owned = _Owned(fences)
                registry = Registry()
                deps = SessionDeps(
                    transport=SimulatorTransport(core), store=store, bus=LocalBus(), registry=registry,
                    inbound=inbound, ownership=owned,
                )
                freeze_start_up()  # as serve does once started, before it restores the salons
                async with open_supervisor(company_actor_factory(deps)) as supervisor:
                    router = Router(supervisor)
                    await router.restore(salon_ids, per_second=1e9)
                    await _wait_connected(registry, salons, poll_s=0.01)
                    phones = {s: f"7900{s:07d}" for s in salon_ids}
                    counts = registry.messages
                    busy = simulator = cpu = 0.0
                    sent = 0
                    for round_ in range(rounds):
                        started = time.perf_counter()
                        for n in range(per_round):
                            for salon_id in salon_ids:
                                wa_id = f"wa-{salon_id}-{round_}-{n}"
                                core.inbound(phones[salon_id], PEER, f"привет {round_}.{n}", wa_id)
                        handed = time.perf_counter()
                        cpu -= time.process_time()
                        sent += per_round * salons
                        # Polled: the measurement's resolution is 2 ms in runs of seconds.
                        while counts.inbound_stored < sent:  # noqa: ASYNC110
                            await trio.sleep(0.002)
                        while await inbound.stream.length() < sent:  # noqa: ASYNC110 (announcements queued)
                            await trio.sleep(0.002)
                        while await _published(store) < sent:  # noqa: ASYNC110 (the last marks may be on their way)
                            await trio.sleep(0.002)
                        done = time.perf_counter()
                        cpu += time.process_time()
                        simulator += handed - started
                        busy += done - handed
                    assert not owned.refused, owned.refused
                    assert counts.inbound_stored == sent and counts.inbound_duplicates == 0, counts
                    rows = await store.messages._db.run(
                        lambda conn: conn.fetchrow(
                            "SELECT count(*) AS n, count(DISTINCT (salon_id, wa_id)) AS d, count(published_at) AS p "
                            "FROM messages WHERE direction = 'in'"
                        )
                    )
                    assert (rows["n"], rows["d"], rows["p"]) == (sent, sent, sent), dict(rows)
                    assert await inbound.stream.length() == sent
                    _finish({
                        "msgs_per_s": sent / busy, "messages": sent, "busy_s": busy, "simulator_s": simulator,
                        "cpu_share": cpu / busy,
                    })


async def _published(store: Store) -> int:
    return int(await store.messages._db.run(
        lambda conn: conn.fetchval("SELECT count(*) FROM messages WHERE direction = 'in' AND published_at IS NOT NULL")
    ))


_BARE = """
import asyncio, sys, time
import asyncpg
import redis.asyncio as aioredis

INSERT = '''
    INSERT INTO messages (salon_id, direction, wa_id, peer, text, status)
    SELECT s, 'in', w, p, t, 'received' FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS b(s, w, p, t)
    ON CONFLICT (salon_id, direction, wa_id) DO NOTHING RETURNING id
'''

MARK = "UPDATE messages SET published_at = now() WHERE id = ANY($1::bigint[])"

async def main(dsn, url, stream, total, batch, mark, prefix):
    conn = await asyncpg.connect(dsn)
    client = aioredis.Redis.from_url(url)
    stored = 0
    started = time.perf_counter()
    for first in range(0, total, batch):
        numbers = range(first, min(first + batch, total))
        salons = [10_000_000 + n % 500 for n in numbers]
        ids = [f"{prefix}-{n}" for n in numbers]
        peers = ["79990001122"] * len(ids)
        texts = [f"привет {n}" for n in numbers]
        rows = [r["id"] for r in await conn.fetch(INSERT, salons, ids, peers, texts)]
        stored += len(rows)
        async with client.pipeline(transaction=False) as pipe:
            for salon, wa_id, peer, text in zip(salons, ids, peers, texts):
                pipe.xadd(stream, {"salon_id": salon, "wa_id": wa_id, "peer": peer, "text": text},
                          maxlen=100_000, approximate=True)
            await pipe.execute()
        if mark:
            await conn.execute(MARK, rows)
    elapsed = time.perf_counter() - started
    assert stored == total, stored
    await client.delete(stream)
    await client.aclose()
    await conn.close()
    print(total / elapsed)

dsn, url, stream, total, batch, mark, prefix = sys.argv[1:]
asyncio.run(main(dsn, url, stream, int(total), int(batch), mark == "mark", prefix))
"""


def _bare(dsn: str, redis_url: str, total: int, *, mark: bool = True) -> float:
    token = secrets.token_hex(4)
    stream = f"actor-admin-bench:{token}:inbound"
    out = subprocess.run(
        [sys.executable, "-c", _BARE, dsn, redis_url, stream, str(total), str(BARE_BATCH), "mark" if mark else "-",
         f"bare-{token}"],
        check=True, capture_output=True, text=True, timeout=600,
    )
    return float(out.stdout.strip())


@contextmanager
def _database() -> Iterator[str]:
    """A freshly migrated database: on ``DATABASE_URL``'s server (dropped after), else an embedded one."""
    admin = os.environ.get("DATABASE_URL")
    if admin:
        name = f"aa_bench_inbound_{secrets.token_hex(4)}"
        dsn = admin.rsplit("/", 1)[0] + "/" + name
        asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
        try:
            asyncio.run(migrate_aio(dsn))
            yield dsn
        finally:
            asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        return
    root = Path(tempfile.mkdtemp(prefix="aa-bench-inbound-"))
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "pg", fast_unsafe=True)
    try:
        dsn = server.start()
        asyncio.run(migrate_aio(dsn))
        yield dsn
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def _admin(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def run(results: dict[str, float]) -> None:
    results["inbound_loadavg_1m"] = os.getloadavg()[0]
    with _database() as dsn, bench_redis_url() as redis_url:
        output = subprocess.run(
            [sys.executable, "-m", "tests.bench.bench_inbound", "--probe", dsn, redis_url,
             str(INBOUND_SALONS), str(PER_ROUND), str(ROUNDS)],
            cwd=_ROOT, check=True, capture_output=True, text=True, timeout=900,
        ).stdout
        ours = json.loads(output.strip().splitlines()[-1])
        bare = _bare(dsn, redis_url, int(ours["messages"]))
        unmarked = _bare(dsn, redis_url, int(ours["messages"]), mark=False)
    results["inbound_msgs_per_s"] = ours["msgs_per_s"]
    results["inbound_bare_msgs_per_s"] = bare
    results["inbound_ratio"] = ours["msgs_per_s"] / bare
    results["inbound_bare_unmarked_msgs_per_s"] = unmarked
    results["inbound_ratio_unmarked"] = ours["msgs_per_s"] / unmarked
    results["inbound_simulator_s"] = ours["simulator_s"]
    results["inbound_cpu_us_per_msg"] = 1e6 * ours["cpu_share"] * ours["busy_s"] / ours["messages"]
    _progress(
        f"{int(ours['messages']):,} messages from {INBOUND_SALONS:,} salons in {ours['busy_s']:.2f} s "
        f"(+ {ours['simulator_s']:.2f} s in the simulator): {ours['msgs_per_s']:,.0f}/s; "
        f"bare batched script {bare:,.0f}/s ({unmarked:,.0f}/s without marking published_at); "
        f"the node's process on the CPU {ours['cpu_share']:.0%} of the time; "
        f"load {results['inbound_loadavg_1m']:.2f}"
    )


def _finish(measured: dict[str, float]) -> NoReturn:
    """Print the probe's numbers for the parent and leave at once (tearing 500 actors down costs time)."""
    print(json.dumps(measured), flush=True)
    os._exit(0)


def _main(argv: list[str]) -> None:
    if len(argv) == 6 and argv[0] == "--probe":
        trio.run(_ours, argv[1], argv[2], int(argv[3]), int(argv[4]), int(argv[5]))
        raise SystemExit("the probe ended without numbers")
    if not argv:
        measured: dict[str, float] = {}
        run(measured)
        for name, value in sorted(measured.items()):
            print(f"{name}: {value:,.3f}")
        return
    raise SystemExit("usage: python -m tests.bench.bench_inbound [--probe DSN REDIS_URL SALONS PER_ROUND ROUNDS]")


if __name__ == "__main__":
    _main(sys.argv[1:])
