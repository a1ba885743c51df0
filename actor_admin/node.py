"""The composition root: wires settings, databases, actors and the web front end, and owns their
lifetimes. Nothing else builds long-lived objects or opens connections. The commands that run a node
(``dev``, ``serve``) are in :mod:`actor_admin.commands`; this module only wires one.

Order matters (docs/architecture.md#start-up-order): ``trio.run`` → trio-asyncio's loop → store and Redis → the
supervisor's nursery → ``hypercorn.trio.serve``. The asyncio loop is opened around the server, not
inside the app, so request tasks inherit it.
"""

from __future__ import annotations

import functools
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import attrs
import trio
import trio_asyncio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from actor_admin import __version__, logs
from actor_admin.actors import Registry, Router, SessionDeps, company_actor_factory, render_qr_svg
from actor_admin.api import Services, create_app
from actor_admin.cluster import (
    Bus,
    EmbeddedRedis,
    InboundAnnouncer,
    InboundStream,
    Keeper,
    LocalBus,
    Locator,
    RateLimiter,
    RedisClient,
    open_node_rpc,
    open_redis_bus,
)
from actor_admin.config import Settings
from actor_admin.console import CommandError, say, watch_signals
from actor_admin.doubles.whatsapp import SimulatorCore, SimulatorTransport
from actor_admin.doubles.yclients import FakeYClients, create_fake_yclients
from actor_admin.runtime import GroupCommitOptions, open_supervisor, sole_exception
from actor_admin.session import SessionPolicy
from actor_admin.store import EmbeddedPostgres, Keyring, Member, MigrationError, Pruner, Store, StoreError
from actor_admin.store import migrate as run_migrations
from actor_admin.store import pending as pending_migrations
from actor_admin.whatsapp import (
    NeonizeTransport,
    NetworkSimulatorTransport,
    Transport,
    ram_store_root,
    require_neonize,
)
from actor_admin.yclients import (
    OutboxWorker,
    SharedThrottle,
    YClientsClient,
    activation_payload,
    run_outbox_worker,
)

log = logging.getLogger("actor_admin.node")

#: How inbound messages are batched (docs/data.md#group-commit; measured by tests/bench/bench_inbound.py).
INBOUND_GROUP_COMMIT = GroupCommitOptions()


@attrs.define
class Parts:
    """What a node is made of, before it serves: the databases and the doubles it talks to."""

    store: Store
    transport: Transport
    #: None: no Redis, one process (a ``LocalBus``, no shared limits, no inbound stream).
    redis: RedisClient | None = None
    #: The in-process simulator when ``transport`` is its ``SimulatorTransport`` (for the dev routes).
    simulator: SimulatorCore | None = None
    fake_yclients: FakeYClients | None = None
    #: This process as a cluster member: given, the node runs the ownership keeper (docs/cluster.md)
    #: and its actors write with fences; None, it owns every salon unfenced (one node, tests).
    member: Member | None = None
    #: The keeper ``open_services`` built for ``member``.
    keeper: Keeper | None = None


@asynccontextmanager
async def open_services(settings: Settings, parts: Parts, *, locator: Locator | None = None) -> AsyncIterator[Services]:
    """Build the bus, limiter, YClients client, the company supervisor and the router around ``parts``.

    ``locator`` says where each salon's actor lives: by default the ownership keeper when
    ``parts.member`` is given, else every salon here; tests pass their own. With Redis the node also
    listens for calls other nodes route to it (docs/cluster.md#routing).

    Used by the real node and by the integration tests, so both run the same wiring.
    """
    async with AsyncExitStack() as stack:
        if parts.redis is not None:
            bus: Bus = await stack.enter_async_context(open_redis_bus(parts.redis))
            limiter = RateLimiter(parts.redis)
        else:
            bus, limiter = LocalBus(), None
        throttle = SharedThrottle(limiter) if limiter is not None else None  # None: the client's own bucket
        yclients = await stack.enter_async_context(YClientsClient.from_settings(settings, throttle=throttle))
        registry = Registry()
        keeper = None
        if parts.member is not None:
            keeper = parts.keeper = Keeper(
                parts.store.ownership,
                parts.member,
                settings.cluster.timings(),
                None,
                functools.partial(_wanted, parts.store),
                restore_per_second=settings.cluster.restore_per_second,
            )
        inbound = await stack.enter_async_context(open_inbound_path(parts.store, parts.redis))
        deps = SessionDeps(
            transport=parts.transport,
            store=parts.store,
            bus=bus,
            registry=registry,
            policy=SessionPolicy(),
            inbound=inbound,
            activation_payload=activation_payload(settings),
            render_svg=render_qr_svg,
            ownership=keeper,
        )
        supervisor = await stack.enter_async_context(
            open_supervisor(company_actor_factory(deps), policy=settings.supervision, log_key="salon_id")
        )
        router = Router(supervisor, locator=locator if locator is not None else keeper)
        if keeper is not None:
            keeper.actors = router
        if parts.redis is not None:
            router.remote = await stack.enter_async_context(open_node_rpc(parts.redis, settings.node_id, router.serve))
        yield Services(
            settings=settings,
            store=parts.store,
            router=router,
            registry=registry,
            bus=bus,
            redis=parts.redis,
            limiter=limiter,
            yclients=yclients,
            simulator=parts.simulator,
            fake_yclients=parts.fake_yclients,
        )


@asynccontextmanager
async def open_inbound_path(
    store: Store, redis: RedisClient | None, options: GroupCommitOptions = INBOUND_GROUP_COMMIT
) -> AsyncIterator[InboundAnnouncer | None]:
    """The actors' inbound sink (None without Redis), with many salons' inbound messages written
    together while the block runs: inserts, publication marks and announcements each join a batch
    (docs/data.md#group-commit). Opened before the actors start and closed after they stop."""
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(store.messages.grouped(options))
        if redis is None:
            yield None
            return
        announcer = InboundAnnouncer(InboundStream(redis), store.messages, options)
        yield await stack.enter_async_context(announcer.running())


def hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.accesslog = None
    config.loglevel = "WARNING"  # our own line says where we listen; hypercorn's would repeat it
    # hypercorn's own errors go through our handlers (JSON in serve), not a plain-text handler of its own.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = max(1.0, settings.shutdown_deadline_s / 2)
    config.websocket_ping_interval = 20.0
    config.include_server_header = False
    return config


async def run_node(settings: Settings, *, migrate: bool) -> int:
    """Run a node until SIGINT/SIGTERM, then stop it gracefully; return the exit status.

    ``migrate``: apply pending migrations first (else only warn about them).

    Raises:
        CommandError: the databases cannot be reached or migrated (a message for the operator).
    """
    logs.configure(settings)
    return await until_signal(lambda stop: _node_body(settings, migrate=migrate, stop=stop))


async def until_signal(body: Callable[[trio.Event], Awaitable[int]]) -> int:
    """Run ``body(stop)``, setting ``stop`` on SIGINT/SIGTERM; its result, or its one error unwrapped.

    Signals are watched for the body's whole life, cleanup included (see console.watch_signals).
    """
    stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            async with trio.open_nursery() as guard:
                guard.start_soon(watch_signals, signals, stop)
                try:
                    return await body(stop)
                finally:
                    guard.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise sole_exception(group) from None  # an operator sees the error, not the nesting


async def open_databases(settings: Settings, stack: AsyncExitStack) -> tuple[str, str]:
    """PostgreSQL's and Redis' URLs: the configured ones, or (dev without them) embedded servers in
    ``DATA_DIR`` that ``stack`` stops."""
    database_url, redis_url = settings.database_url, settings.redis_url
    dev = settings.mode == "dev"
    if dev and database_url is None:
        say(f"starting embedded PostgreSQL (data in {settings.data_dir / 'pg'}) …")
        pg = EmbeddedPostgres(settings.data_dir / "pg")
        database_url = await trio.to_thread.run_sync(pg.start)
        stack.callback(pg.stop)
    if dev and redis_url is None:
        say(f"starting embedded Redis (data in {settings.data_dir / 'redis'}) …")
        embedded_redis = EmbeddedRedis(settings.data_dir.absolute())
        redis_url = await trio.to_thread.run_sync(embedded_redis.start)
        stack.callback(embedded_redis.stop)
    assert database_url is not None and redis_url is not None
    return database_url, redis_url


async def migrate_now(database_url: str) -> None:
    """Apply pending migrations, saying each (inside trio-asyncio's loop)."""
    applied = await run_migrations(database_url, progress=lambda name: say(f"applying migration {name}"))
    if applied:
        say(f"applied {len(applied)} migration(s)")


async def _node_body(settings: Settings, *, migrate: bool, stop: trio.Event) -> int:
    async with AsyncExitStack() as stack:
        dev = settings.mode == "dev"
        database_url, redis_url = await open_databases(settings, stack)
        await stack.enter_async_context(trio_asyncio.open_loop())
        try:
            if migrate:
                await migrate_now(database_url)
            else:
                waiting = await pending_migrations(database_url)
                if waiting:
                    log.warning("pending migrations not applied (--no-migrate): %s", ", ".join(waiting))
        except MigrationError as exc:
            raise CommandError(f"actor-admin {settings.mode}: {exc}") from None
        except StoreError as exc:
            raise CommandError(
                f"actor-admin {settings.mode}: cannot reach PostgreSQL ({exc}); check DATABASE_URL and that the "
                "server is running (`actor-admin doctor` checks it)"
            ) from None
        store = await Store.open(
            database_url, pool_size=settings.pg_pool_size, credentials_keys=Keyring(settings.credentials_key)
        )
        stack.push_async_callback(store.aclose)
        redis = await RedisClient.open(redis_url)
        stack.push_async_callback(redis.aclose)

        transport, simulator = _transport(settings)
        if isinstance(transport, NeonizeTransport):
            stack.callback(transport.close)
        parts = Parts(
            store=store,
            transport=transport,
            redis=redis,
            simulator=simulator,
            member=Member.new(settings.node_id, __version__),
        )
        if dev:
            parts.fake_yclients = create_fake_yclients(
                settings.yclients_partner_token, settings.yclients_app_id, settings.public_url
            )
        services = await stack.enter_async_context(open_services(settings, parts))
        app = create_app(services)
        keeper = parts.keeper
        async with trio.open_nursery() as nursery:
            if keeper is not None:
                nursery.start_soon(keeper.run)
            _start_workers(nursery, services)
            binds = await nursery.start(
                lambda task_status: serve(
                    app, hypercorn_config(settings), shutdown_trigger=stop.wait, task_status=task_status
                )
            )
            url = _landing_url(settings, binds)
            say(f"actor-admin {settings.mode} {__version__} is running — open {url}")
            nursery.start_soon(_restore, services, keeper)
            await stop.wait()
            services.shutting_down.set()
            say("stopping …")
            with trio.move_on_after(settings.shutdown_deadline_s):
                if keeper is not None:
                    # Hand every salon to the other nodes (stop → release), then leave the cluster.
                    await keeper.drain(deadline_s=settings.shutdown_deadline_s * 0.6)
                await services.router.supervisor.aclose(grace=max(1.0, settings.shutdown_deadline_s / 2))
            nursery.cancel_scope.cancel()
    say("stopped")
    return 0


def _landing_url(settings: Settings, binds: list[str]) -> str:
    if settings.port != 0:
        return settings.public_url + "/"
    return (binds[0] if binds else settings.public_url) + "/"


def _start_workers(nursery: trio.Nursery, services: Services) -> None:
    """Background workers: the YClients outbox (activation calls, retried within their window) and
    retention (old rows pruned in small batches, docs/data.md#retention)."""
    worker = OutboxWorker(services.store, services.yclients, services.settings)
    services.outbox_worker = worker
    nursery.start_soon(
        functools.partial(run_outbox_worker, services.store, services.yclients, services.settings, worker=worker)
    )
    services.pruner = Pruner(services.store.retention, services.settings.retention)
    nursery.start_soon(services.pruner.run)


async def _wanted(store: Store) -> set[int]:
    """The salons that should run: stored credentials, neither frozen nor uninstalled."""
    return {company.salon_id for company in await store.companies.list_with_credentials()}


async def _restore(services: Services, keeper: Keeper | None) -> None:
    """Reconnect every salon with stored credentials, paced so a restart does not stampede WhatsApp.

    In a cluster the keeper does it: it claims what placement gives this node and starts it paced.
    """
    if keeper is not None:
        await keeper.planned.wait()
        if keeper.local:
            say(f"reconnecting {len(keeper.local)} salon(s) with stored WhatsApp credentials …")
        count = await keeper.restore()
        if count:
            say(f"reconnected {count} salon(s)")
        return
    try:
        companies = await services.store.companies.list_with_credentials()
    except Exception as exc:
        log.error("could not list companies to restore: %s", exc)
        return
    if not companies:
        return
    say(f"reconnecting {len(companies)} salon(s) with stored WhatsApp credentials …")
    count = await services.router.restore([c.salon_id for c in companies])
    say(f"reconnected {count} salon(s)")


def _transport(settings: Settings) -> tuple[Transport, SimulatorCore | None]:
    """The WhatsApp transport this node uses, and the in-process simulator when it is one."""
    if settings.whatsapp_transport == "neonize":
        require_neonize()
        # Working stores hold keys unencrypted: RAM only, never DATA_DIR
        # (docs/neonize-transport.md#where-the-working-stores-live).
        return (
            NeonizeTransport(
                store_dir=ram_store_root(settings.runtime_dir),
                legacy_store_dirs=[settings.data_dir / "neonize"],
            ),
            None,
        )
    if settings.whatsapp_simulator_url:
        return NetworkSimulatorTransport(settings.whatsapp_simulator_url), None
    core = SimulatorCore()
    return SimulatorTransport(core), core
