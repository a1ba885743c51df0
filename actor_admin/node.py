"""The composition root: wires settings, databases, actors and the web front end, and owns their
lifetimes. Nothing else builds long-lived objects or opens connections. The commands that run a node
(``dev``, ``serve``) are in :mod:`actor_admin.commands`; this module only wires one.

Order matters (docs/architecture.md#start-up-order): ``trio.run`` → trio-asyncio's loop → the Redis client →
``hypercorn.trio.serve`` with the front door → waiting for PostgreSQL, migrations, the store → the
supervisor's nursery → the real app behind the front door. The asyncio loop is opened around the
server, not inside the app, so request tasks inherit it.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Protocol

import attrs
import trio
import trio_asyncio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from actor_admin import __version__, logs
from actor_admin.actors import Registry, Router, SessionDeps, UpstreamWatch, company_actor_factory
from actor_admin.api import Counters, FrontDoor, Services, Starting, create_app
from actor_admin.backoff import Backoff
from actor_admin.cluster import (
    Bus,
    EmbeddedRedis,
    InboundAnnouncer,
    InboundStream,
    Keeper,
    LocalBus,
    Locator,
    RateLimiter,
    Reannouncer,
    RedisClient,
    open_node_rpc,
    open_redis_bus,
)
from actor_admin.config import Settings, redact_url
from actor_admin.console import CommandError, say, watch_signals
from actor_admin.doubles.whatsapp import DevicesFileError, SimulatorCore, SimulatorTransport, simulator_devices_file
from actor_admin.doubles.yclients import FakeYClients, create_fake_yclients
from actor_admin.runtime import GroupCommitOptions, open_supervisor, sole_exception
from actor_admin.session import SessionPolicy
from actor_admin.store import (
    EmbeddedPostgres,
    Keyring,
    Member,
    MigrationError,
    Pruner,
    Store,
    StoreError,
    StoreUnavailable,
    credentials_by_transport,
)
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
    #: Freezes the heap after restore and claim rounds (the node's; None in tests: nothing frozen).
    collector: CollectorPolicy | None = None


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
        upstream = UpstreamWatch(registry)
        keeper = None
        if parts.member is not None:
            keeper = parts.keeper = Keeper(
                parts.store.ownership,
                parts.member,
                settings.cluster.timings(),
                None,
                functools.partial(_wanted, parts.store),
                restore_per_second=settings.cluster.restore_per_second,
                settled=None if parts.collector is None else parts.collector.settled,
            )
        inbound = await stack.enter_async_context(open_inbound_path(parts.store, parts.redis))
        reannouncer = None
        if inbound is not None:
            reannouncer = await start_reannouncing(
                stack, inbound, parts.store, None if parts.member is None else parts.member.node_id, settings
            )
        deps = SessionDeps(
            transport=parts.transport,
            store=parts.store,
            bus=bus,
            registry=registry,
            policy=SessionPolicy(),
            inbound=inbound,
            activation_payload=activation_payload(settings),
            ownership=keeper,
            upstream=upstream,
        )
        supervisor = await stack.enter_async_context(
            open_supervisor(company_actor_factory(deps), policy=settings.supervision, log_key="salon_id")
        )
        router = Router(supervisor, locator=locator if locator is not None else keeper)
        if parts.collector is not None:
            parts.collector.counts = supervisor
        if keeper is not None:
            keeper.actors = router
        if parts.redis is not None:
            rpc = await stack.enter_async_context(
                open_node_rpc(
                    parts.redis, settings.node_id, router.serve, on_nudge=None if keeper is None else keeper.nudge
                )
            )
            router.remote = rpc
            if keeper is not None:
                keeper.nudge_other = rpc.nudge  # a hand-over tells the new owner over Redis to plan now
        # Restores the salons an upstream outage held back (docs/whatsapp.md#upstream-outage).
        watch_nursery = await stack.enter_async_context(trio.open_nursery())
        watch_nursery.start_soon(upstream.run, router)
        stack.callback(watch_nursery.cancel_scope.cancel)
        services = Services(
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
            upstream=upstream,
            reannouncer=reannouncer,
        )
        if parts.collector is not None:
            parts.collector.viewers = services.counters
        yield services


def tune_gc(settings: Settings) -> None:
    """Run the garbage collector with the node's thresholds (``GC_THRESHOLDS``,
    docs/websocket.md#garbage-collection)."""
    gc.set_threshold(*settings.gc_thresholds)


def freeze_start_up() -> None:
    """Collect once, then move every object made so far — modules, classes, the app and its
    routes, the services — out of the collector's sight for good: they live as long as the process,
    and every full collection would walk them again (docs/websocket.md#garbage-collection)."""
    gc.collect()
    gc.freeze()


class ActorCounts(Protocol):
    """What :class:`CollectorPolicy` reads of the company actors' supervisor (both O(1))."""

    @property
    def actors(self) -> int: ...
    @property
    def ended_total(self) -> int: ...


@attrs.define
class CollectorPolicy:
    """Where the node moves its long-lived heap out of the garbage collector's sight
    (docs/capacity.md#garbage-collection): the one place besides :func:`tune_gc` that touches ``gc``.

    A full collection walks every tracked object: ≈ 0.9–1.1 s of CPU with 10,000 connected salons,
    the node's loop stopped meanwhile. The salons' actors live for hours, so after each restore or
    claim round has started its actors (the keeper's ``settled``) :meth:`settled` freezes what is
    alive — ``gc.freeze()`` moves the generations' lists, it walks nothing — and full collections walk
    only what is younger. Frozen objects are still freed by reference counting; what an actor that
    ends later had in reference cycles (≈ 40 objects, ≈ 5 KB) is not, nor a frozen viewer's (≈ 130
    objects). So once the actor runs and viewers ended since the last full collection reach
    ``refreeze_share`` of those running, :meth:`settled`
    unfreezes, collects once (one full pause) and freezes again: that garbage stays below a share of
    the heap, and the pause comes once per so many salons leaving, not with the heap's growth.
    """

    #: ``Settings.gc_refreeze_share``.
    refreeze_share: float
    #: The company actors' supervisor and the websocket counters, bound by ``open_services``;
    #: without the supervisor nothing is frozen.
    counts: ActorCounts | None = None
    viewers: Counters | None = None
    #: Actors' runs and viewers ended, at the last full collection; whether anything was frozen since.
    ended_at_collection: int = 0
    frozen_since_collection: bool = False
    #: Freeze once more at the next call (the connections a round's last actors opened since).
    again: bool = False
    freezes: int = 0
    refreezes: int = 0

    def _ended_and_running(self) -> tuple[int, int]:
        assert self.counts is not None
        ended, running = self.counts.ended_total, self.counts.actors
        if self.viewers is not None:  # a closed viewer leaves ≈ 130 objects in cycles: counted alike
            ended += self.viewers.websockets_total - self.viewers.websockets_open
            running += self.viewers.websockets_open
        return ended, running

    @classmethod
    def from_settings(cls, settings: Settings) -> CollectorPolicy:
        return cls(settings.gc_refreeze_share)

    def start_up(self) -> None:
        """:func:`freeze_start_up`: a full collection, so the actors that ended so far are counted."""
        freeze_start_up()
        if self.counts is not None:
            self.ended_at_collection = self._ended_and_running()[0]

    def settled(self, started: int) -> None:
        """After a planning round or once a round's ``started`` actors are all started: freeze what
        they made, or collect the garbage frozen with actors that ended since."""
        if self.counts is None:
            return
        again, self.again = self.again, started > 0
        ended_total, running = self._ended_and_running()
        ended = ended_total - self.ended_at_collection
        if self.frozen_since_collection and ended and ended >= self.refreeze_share * running:
            gc.unfreeze()
            gc.collect()
            self.ended_at_collection = ended_total
            self.refreezes += 1
        elif started or again:
            self.frozen_since_collection = True
            self.freezes += 1
        else:
            return
        gc.freeze()


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


async def start_reannouncing(
    stack: AsyncExitStack, inbound: InboundAnnouncer, store: Store, node_id: str | None, settings: Settings
) -> Reannouncer:
    """Hold the salons with messages not yet on the inbound stream, then re-announce the node's own
    in the background (docs/data.md#reannouncing): before the actors start, so none of them
    overtakes what a crash or a Redis outage left."""
    reannouncer = Reannouncer(inbound, store.messages, node_id=node_id, retention_days=settings.retention.messages_days)
    try:
        await reannouncer.start_up()
    except Exception as exc:  # PostgreSQL down, or its schema not migrated yet (/readyz says which):
        # the first check finds the leftovers instead, as ``run`` retries any failure.
        log.warning("inbound: could not look for unpublished messages at start: %s: %s", type(exc).__name__, exc)
    nursery = await stack.enter_async_context(trio.open_nursery())
    nursery.start_soon(reannouncer.run)
    stack.callback(nursery.cancel_scope.cancel)
    return reannouncer


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


async def refuse_real_credentials(settings: Settings, database_url: str) -> None:
    """``dev`` with the simulator refuses a database holding real WhatsApp credentials (production's,
    most likely): the simulator would answer 401 to every one of them. Checked before migrating, so
    such a database is not changed either (docs/commands-and-settings.md#dev).

    Raises:
        CommandError: saying what to do.
    """
    real = (await credentials_by_transport(database_url)).get("neonize", 0)
    if real:
        raise CommandError(
            f"actor-admin dev: the database at {redact_url(database_url)} holds real WhatsApp credentials "
            f"({real} salon(s), made by neonize); dev runs the WhatsApp simulator and must not touch them. "
            "Unset DATABASE_URL (and REDIS_URL) to use dev's embedded databases, or point it at a database of "
            "your own; production runs `actor-admin serve`"
        )


async def migrate_now(database_url: str) -> None:
    """Apply pending migrations, saying each (inside trio-asyncio's loop)."""
    applied = await run_migrations(database_url, progress=lambda name: say(f"applying migration {name}"))
    if applied:
        say(f"applied {len(applied)} migration(s)")


@asynccontextmanager
async def open_asyncio_loop() -> AsyncIterator[asyncio.AbstractEventLoop]:
    """trio-asyncio's loop, with asyncio's unretrieved errors logged instead of raised.

    trio-asyncio raises any error that no asyncio task retrieved into the loop's nursery, which would
    end the node. During a database outage asyncpg leaves a few behind by itself (a connect cancelled
    by its timeout just as the socket opened, a background close of an expired connection): worth a
    warning line, never a crash (docs/data.md#failover).
    """
    async with trio_asyncio.open_loop() as loop:
        loop.set_exception_handler(_log_asyncio_error)
        yield loop


def _log_asyncio_error(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    error = context.get("exception")
    log.warning(
        "asyncio: %s", context.get("message") or "unhandled error",
        exc_info=error if isinstance(error, BaseException) else None,
    )


#: The longest pause between two attempts to reach PostgreSQL at start (one progress line each).
START_RETRY_MAX_S = 5.0


async def _node_body(settings: Settings, *, migrate: bool, stop: trio.Event) -> int:
    tune_gc(settings)
    async with AsyncExitStack() as stack:
        database_url, redis_url = await open_databases(settings, stack)
        await stack.enter_async_context(open_asyncio_loop())
        redis = await RedisClient.open(redis_url)
        stack.push_async_callback(redis.aclose)
        # Listen from the start: /healthz and a truthful /readyz while PostgreSQL is not there yet.
        front = FrontDoor(Starting(redis=redis))
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                lambda task_status: serve(
                    front,  # type: ignore[arg-type]  # a plain ASGI app, typed with mappings (like BodyLimit)
                    hypercorn_config(settings),
                    shutdown_trigger=stop.wait,
                    task_status=task_status,
                )
            )
            store = await wait_for_postgres(settings, database_url, migrate=migrate, starting=front.starting, stop=stop)
            if store is not None:
                async with store:
                    await _run_node(settings, store, redis, front, nursery, binds, stop)
            nursery.cancel_scope.cancel()
    say("stopped")
    return 0


async def wait_for_postgres(
    settings: Settings, database_url: str, *, migrate: bool, starting: Starting, stop: trio.Event
) -> Store | None:
    """Migrate (or check the schema) and open the store, waiting with back-off while PostgreSQL cannot
    be reached (docs/commands-and-settings.md#serve); None when ``stop`` is set first.

    Raises:
        CommandError: the schema cannot be migrated (not something waiting cures).
    """
    opened: list[Store] = []
    async with trio.open_nursery() as watch:
        watch.start_soon(_cancel_when, stop, watch.cancel_scope)
        opened.append(await _open_when_reachable(settings, database_url, migrate=migrate, starting=starting))
        watch.cancel_scope.cancel()
    if not opened:
        log.info("stopped while waiting for PostgreSQL")
        return None
    return opened[0]


async def _open_when_reachable(settings: Settings, database_url: str, *, migrate: bool, starting: Starting) -> Store:
    backoff = Backoff(initial_s=1.0, max_s=START_RETRY_MAX_S)
    where = redact_url(database_url)
    while True:
        try:
            await _prepare_schema(settings, database_url, migrate=migrate)
            return await Store.open(
                database_url,
                pool_size=settings.pg_pool_size,
                credentials_keys=Keyring(settings.credentials_key),
                limits=settings.pg_limits(),
            )
        except StoreUnavailable as exc:
            starting.failed(str(exc))
            delay = backoff.delay(min(starting.attempts - 1, 30), random.random())
            log.warning(
                "waiting for PostgreSQL at %s (attempt %d, %.0f s so far): %s; next try in %.1f s. "
                "/readyz answers 503 until it is reachable. Check it with `actor-admin doctor` "
                'or `pg_isready -d "$DATABASE_URL"`',
                where, starting.attempts, trio.current_time() - starting.since, exc, delay,
            )
            await trio.sleep(delay)


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


async def _prepare_schema(settings: Settings, database_url: str, *, migrate: bool) -> None:
    try:
        if settings.mode == "dev" and settings.whatsapp_transport == "simulator":
            await refuse_real_credentials(settings, database_url)
        if migrate:
            await migrate_now(database_url)
        else:
            waiting = await pending_migrations(database_url)
            if waiting:
                log.warning("pending migrations not applied (--no-migrate): %s", ", ".join(waiting))
    except MigrationError as exc:
        raise CommandError(f"actor-admin {settings.mode}: {exc}") from None
    except StoreUnavailable:
        raise
    except StoreError as exc:
        raise CommandError(
            f"actor-admin {settings.mode}: cannot use PostgreSQL ({exc}); check DATABASE_URL "
            "(`actor-admin doctor` checks it)"
        ) from None


async def _run_node(
    settings: Settings,
    store: Store,
    redis: RedisClient,
    front: FrontDoor,
    server: trio.Nursery,
    binds: list[str],
    stop: trio.Event,
) -> None:
    """Everything after PostgreSQL answered: the actors, the workers and the real app behind ``front``."""
    transport, simulator = _transport(settings)
    try:
        await _run_parts(settings, store, redis, transport, simulator, front, server, binds, stop)
    finally:
        if isinstance(transport, NeonizeTransport):
            transport.close()


async def _run_parts(
    settings: Settings,
    store: Store,
    redis: RedisClient,
    transport: Transport,
    simulator: SimulatorCore | None,
    front: FrontDoor,
    server: trio.Nursery,
    binds: list[str],
    stop: trio.Event,
) -> None:
    parts = Parts(
        store=store,
        transport=transport,
        redis=redis,
        simulator=simulator,
        member=Member.new(settings.node_id, __version__),
        collector=CollectorPolicy.from_settings(settings),
    )
    if settings.mode == "dev":
        parts.fake_yclients = create_fake_yclients(
            settings.yclients_partner_token, settings.yclients_app_id, settings.public_url
        )
    async with open_services(settings, parts) as services, trio.open_nursery() as nursery:
        keeper = parts.keeper
        if keeper is not None:
            nursery.start_soon(keeper.run)
        _start_workers(nursery, services)
        await front.open(create_app(services), server)
        assert parts.collector is not None
        parts.collector.start_up()
        url = _landing_url(settings, binds)
        say(f"actor-admin {settings.mode} {__version__} is running — open {url}")
        nursery.start_soon(_restore, services, keeper, parts.collector)
        await stop.wait()
        services.shutting_down.set()
        say("stopping …")
        with trio.move_on_after(settings.shutdown_deadline_s):
            if keeper is not None:
                # Hand every salon to the other nodes (stop → release), then leave the cluster.
                await keeper.drain(deadline_s=settings.shutdown_deadline_s * 0.6)
            await services.router.supervisor.aclose(grace=max(1.0, settings.shutdown_deadline_s / 2))
        nursery.cancel_scope.cancel()


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


#: How long the start-up line waits for restored salons to connect before it counts them.
RESTORE_REPORT_WAIT_S = 30.0
# States a restored salon leaves only by someone's action or a long timer: counted as they are.
_SETTLED_STATES = frozenset({"connected", "logged_out", "conflict", "failed", "frozen", "uninstalled"})


async def _restore(services: Services, keeper: Keeper | None, collector: CollectorPolicy | None = None) -> None:
    """Reconnect every salon with stored credentials, paced so a restart does not stampede WhatsApp,
    then say how many actually connected.

    In a cluster the keeper does it: it claims what placement gives this node and starts it paced.
    """
    if keeper is not None:
        await keeper.planned.wait()
        if keeper.local:
            say(f"reconnecting {len(keeper.local)} salon(s) with stored WhatsApp credentials …")
        if await keeper.restore():
            await report_restored(services.registry, list(keeper.local))
        return
    try:
        companies = await services.store.companies.list_with_credentials()
    except Exception as exc:
        log.error("could not list companies to restore: %s", exc)
        return
    if not companies:
        return
    say(f"reconnecting {len(companies)} salon(s) with stored WhatsApp credentials …")
    started = await services.router.restore([c.salon_id for c in companies])
    if collector is not None:
        collector.settled(started)  # as the keeper's rounds do
    await report_restored(services.registry, [c.salon_id for c in companies])


async def report_restored(registry: Registry, salon_ids: list[int], *, wait_s: float = RESTORE_REPORT_WAIT_S) -> str:
    """Say (and return) how many of ``salon_ids`` connected: it waits up to ``wait_s`` for each to
    connect or stop somewhere a person must look, and names the rest — a started attempt is not a
    reconnection (e.g. "reconnected 3 of 4 salon(s); 1 still connecting")."""

    def settled(salon_id: int) -> bool:
        view = registry.get(salon_id)
        return view is not None and view.state in _SETTLED_STATES

    with trio.move_on_after(wait_s):
        await registry.wait_for(lambda: all(settled(s) for s in salon_ids))
    outcomes: Counter[str] = Counter()
    for salon_id in salon_ids:
        view = registry.get(salon_id)
        if view is None or not settled(salon_id):
            outcomes["still connecting"] += 1
        elif view.state != "connected":
            outcomes[view.state.replace("_", " ") + (f" ({view.reason})" if view.reason else "")] += 1
    connected = len(salon_ids) - sum(outcomes.values())
    line = f"reconnected {connected} of {len(salon_ids)} salon(s)"
    line += "".join(f"; {n} {outcome}" for outcome, n in sorted(outcomes.items()))
    say(line)
    return line


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
    # WhatsApp's servers remember linked devices; so does dev's simulator, so a restart needs no rescan.
    try:
        core = SimulatorCore(devices_file=simulator_devices_file(settings.data_dir))
    except DevicesFileError as exc:
        raise CommandError(f"actor-admin {settings.mode}: {exc}") from None
    return SimulatorTransport(core), core
