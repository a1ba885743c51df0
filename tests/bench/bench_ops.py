"""``/status`` with 10,000 companies (docs/architecture.md#performance-targets: under 50 ms).

``run(results)`` adds, measured in a fresh subprocess (``python -m tests.bench.bench_ops --probe``)
so the figure starts from a clean heap and 10,000 actors need not be torn down:

* ``status_10k_ms`` — median wall time of ``GET /status`` (``Accept: application/json``, no
  token: the aggregates only) over real HTTP, on a node with 10,000 connected sessions.
* ``status_10k_admin_ms`` — the same with the admin token, so the body also lists every company
  (~1.3 MB of JSON); ``status_10k_admin_bytes`` is that body's size.

The node is wired by ``actor_admin.node.open_services`` — the production wiring — on a throwaway
migrated PostgreSQL database and real Redis, because ``/status`` pings both and reads the outbox
aggregate; it is served by hypercorn on a real port and asked by httpx in the same process (so the
figure includes the client's share of the work). The 10,000 sessions are real ``CompanySession``
actors connected through the in-process simulator, with the in-memory store for their credentials
(tests/actors/memory_store.py) and a ``LocalBus``; they run under a supervisor of their own that
replaces the node's in its router (as tests/api/test_ops.py does), so bringing them up costs no
database round trips. ``DATABASE_URL`` / ``REDIS_URL`` name the servers (``env $(bash
tests/services.sh)``); without them embedded servers are started in a temporary directory.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NoReturn

import httpx
import trio
import trio_asyncio
from hypercorn.config import Config
from hypercorn.trio import serve

from actor_admin.actors import SessionDeps, company_actor_factory
from actor_admin.api import create_app
from actor_admin.cluster import EmbeddedRedis, LocalBus, RedisClient
from actor_admin.config import Settings, load_settings
from actor_admin.doubles.whatsapp import SimulatorCore, SimulatorTransport
from actor_admin.node import Parts, open_services
from actor_admin.runtime import open_supervisor
from actor_admin.store import EmbeddedPostgres, Keyring, open_store
from actor_admin.store._migrations import migrate_aio
from tests._pg import drop_database, make_database
from tests.actors.memory_store import MemoryStore
from tests.bench.bench_sessions import _link_salons, _wait_connected

COMPANIES = 10_000
CALLS = 20
WARMUP = 3
ADMIN_TOKEN = "admin-" + "b" * 32
_ROOT = Path(__file__).resolve().parents[2]


def _progress(text: str) -> None:
    print(f"  ops: {text}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settings(port: int, database_url: str, redis_url: str) -> Settings:
    env = {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET": "jwt-" + "j" * 40,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "CREDENTIALS_KEY": base64.b64encode(bytes(range(32))).decode(),
        "YCLIENTS_PARTNER_TOKEN": "partner-" + "p" * 24,
        "YCLIENTS_APP_ID": "1",
        "NODE_ID": f"bench-ops-{port}",
    }
    return load_settings("dev", env, dotenv=None)


async def _median_ms(http: httpx.AsyncClient, headers: dict[str, str]) -> tuple[float, httpx.Response]:
    """Median wall time of ``CALLS`` sequential ``GET /status`` after ``WARMUP`` unmeasured ones."""
    samples: list[float] = []
    response: httpx.Response | None = None
    for n in range(WARMUP + CALLS):
        started = time.perf_counter()
        response = await http.get("/status", headers=headers)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        if n >= WARMUP:
            samples.append(elapsed)
    assert response is not None
    return statistics.median(samples) * 1e3, response


async def _status_probe(database_url: str, redis_url: str) -> None:
    port = _free_port()
    settings = _settings(port, database_url, redis_url)
    core = SimulatorCore()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    async with (
        trio_asyncio.open_loop(),
        open_store(database_url, pool_size=4, credentials_keys=Keyring(settings.credentials_key)) as store,
    ):
        redis = await RedisClient.open(redis_url)
        parts = Parts(store=store, redis=redis, transport=SimulatorTransport(core), simulator=core)
        async with open_services(settings, parts) as services:
            memory = MemoryStore()
            deps = SessionDeps(
                transport=SimulatorTransport(core), store=memory, bus=LocalBus(), registry=services.registry
            )
            async with open_supervisor(company_actor_factory(deps)) as supervisor, trio.open_nursery() as nursery:
                services.router.supervisor = supervisor
                started = time.perf_counter()
                salons = range(1, COMPANIES + 1)
                await _link_salons(core, memory, salons)
                await services.router.restore(salons, per_second=1e9)
                await _wait_connected(services.registry, COMPANIES, poll_s=0.05)
                brought_up_s = time.perf_counter() - started

                await nursery.start(lambda task_status: serve(create_app(services), config, task_status=task_status))
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                    accept = {"Accept": "application/json"}
                    plain_ms, plain = await _median_ms(http, accept)
                    admin_ms, admin = await _median_ms(http, accept | {"Authorization": f"Bearer {ADMIN_TOKEN}"})
                body, detailed = plain.json(), admin.json()
                # The numbers only count if the node really shows the 10,000 companies.
                assert body["actors"]["total"] == COMPANIES, body["actors"]
                assert body["actors"]["by_state"] == {"connected": COMPANIES}, body["actors"]
                assert body["dependencies"]["postgres"]["ok"] and body["dependencies"]["redis"]["ok"], body
                assert "companies" not in body
                assert len(detailed["companies"]) == COMPANIES
                _finish(
                    {
                        "plain_ms": plain_ms,
                        "admin_ms": admin_ms,
                        "admin_bytes": float(len(admin.content)),
                        "plain_bytes": float(len(plain.content)),
                        "brought_up_s": brought_up_s,
                    }
                )


def _finish(measured: dict[str, float]) -> NoReturn:
    """Print the numbers for the parent and leave at once: tearing down 10,000 actors costs time."""
    print(json.dumps(measured), flush=True)
    os._exit(0)


# -- the parent: servers, a throwaway database, the subprocess --------------------------------------


def _probe(database_url: str, redis_url: str) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_ops", "--probe", database_url, redis_url],
        cwd=_ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(results: dict[str, float]) -> None:
    admin_dsn, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    root: Path | None = None
    pg: EmbeddedPostgres | None = None
    embedded_redis: EmbeddedRedis | None = None
    dsn: str | None = None
    try:
        if not admin_dsn or not redis_url:
            # Not a 0700 mkdtemp: under root the embedded PostgreSQL runs as another user.
            root = Path(tempfile.mkdtemp(prefix="aa-bench-ops-"))
            root.chmod(0o755)
        if not admin_dsn:
            assert root is not None
            pg = EmbeddedPostgres(root / "pg", fast_unsafe=True)
            admin_dsn = pg.start()
        if not redis_url:
            assert root is not None
            embedded_redis = EmbeddedRedis(root)
            redis_url = embedded_redis.start()
        dsn = make_database(admin_dsn)
        asyncio.run(migrate_aio(dsn))
        measured = _probe(dsn, redis_url)
    finally:
        if dsn is not None and admin_dsn:
            drop_database(admin_dsn, dsn)
        if embedded_redis is not None:
            embedded_redis.stop()
        if pg is not None:
            pg.stop()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    results["status_10k_ms"] = measured["plain_ms"]
    results["status_10k_admin_ms"] = measured["admin_ms"]
    results["status_10k_admin_bytes"] = measured["admin_bytes"]
    _progress(
        f"/status with {COMPANIES:,} connected companies, median of {CALLS}: "
        f"{measured['plain_ms']:.1f} ms aggregates ({measured['plain_bytes']:,.0f} B), "
        f"{measured['admin_ms']:.1f} ms with the admin token ({measured['admin_bytes'] / 1e6:.2f} MB); "
        f"sessions brought up in {measured['brought_up_s']:.1f} s"
    )


def _main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "--probe":
        trio.run(_status_probe, argv[1], argv[2])
        raise SystemExit("the probe ended without numbers")
    if not argv:
        measured: dict[str, float] = {}
        run(measured)
        for name, value in sorted(measured.items()):
            print(f"{name}: {value:,.3f}")
        return
    raise SystemExit("usage: python -m tests.bench.bench_ops [--probe DATABASE_URL REDIS_URL]")


if __name__ == "__main__":
    _main(sys.argv[1:])
