"""Retention on real PostgreSQL: old rows go in small batches, recent and pending rows stay, and the
job never holds a lock a writer has to wait for beyond one batch (docs/data.md#retention)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import trio

from actor_admin.store import (
    RETENTION_LOCK_KEY,
    Keyring,
    Pruner,
    RetentionPolicy,
    Store,
    migrate,
    open_store,
)
from tests.store._ownership_helpers import open_transaction, sql

PHONE = "79001234567"


def policy(**overrides: float) -> RetentionPolicy:
    values: dict[str, float] = {"batch_rows": 1000, "pause_s": 0.0} | overrides
    return RetentionPolicy(**values)  # type: ignore[arg-type]


async def old_messages(dsn: str, count: int, *, days: int = 100, salon_id: int = 7) -> None:
    await sql(
        dsn,
        "INSERT INTO messages (salon_id, direction, wa_id, peer, text, status, at) "
        "SELECT $1, 'in', 'old-' || g, $2, 'text of ' || g, 'received', "
        "       now() - make_interval(days => $3) - g * interval '1 second' "
        "FROM generate_series(1, $4) g",
        salon_id, PHONE, days, count,
    )


async def count(dsn: str, query: str) -> int:
    return int((await sql(dsn, query))[0][0])


async def test_old_rows_are_pruned_in_batches_and_recent_ones_kept(store: Store, pg_dsn: str) -> None:
    await old_messages(pg_dsn, 2500)
    assert await store.messages.insert_inbound(7, "recent", PHONE, "hi")
    await sql(
        pg_dsn,
        "INSERT INTO company_events (salon_id, type, at) "
        "SELECT 7, 'old', now() - interval '400 days' - g * interval '1 minute' FROM generate_series(1, 30) g",
    )
    await store.events.append(7, "recent")

    run = await Pruner(store.retention, policy()).prune_once()

    assert run.outcome == "done"
    assert run.pruned == {"messages": 2500, "company_events": 30, "outbox": 0}
    # 1000 + 1000 + 500 messages, one batch of events, one (empty) of the outbox.
    assert run.batches == 5
    assert [m.wa_id for m in await store.messages.latest(7)] == ["recent"]
    assert [e.type for e in await store.events.list(7)] == ["recent"]


async def test_a_pending_outbox_row_is_never_pruned_however_old(store: Store, pg_dsn: str) -> None:
    await sql(
        pg_dsn,
        "INSERT INTO outbox (kind, salon_id, payload, created_at, next_attempt_at, delivered_at, failed_at) VALUES "
        " ('activation', 1, '{}', now() - interval '400 days', now() - interval '400 days', NULL, NULL),"
        " ('activation', 2, '{}', now() - interval '60 days', now(), now() - interval '40 days', NULL),"
        " ('activation', 3, '{}', now() - interval '60 days', now(), NULL, now() - interval '40 days'),"
        " ('activation', 4, '{}', now() - interval '60 days', now(), now() - interval '5 days', NULL)",
    )

    run = await Pruner(store.retention, policy()).prune_once()

    assert run.pruned["outbox"] == 2
    assert [r[0] for r in await sql(pg_dsn, "SELECT salon_id FROM outbox ORDER BY salon_id")] == [1, 4]


async def test_zero_days_keeps_a_table_forever(store: Store, pg_dsn: str) -> None:
    await old_messages(pg_dsn, 10, days=3000)

    run = await Pruner(store.retention, policy(messages_days=0)).prune_once()

    assert run.pruned["messages"] == 0
    assert await count(pg_dsn, "SELECT count(*) FROM messages") == 10


async def test_the_audit_log_still_refuses_deletes_of_recent_rows_and_every_update(store: Store, pg_dsn: str) -> None:
    await store.events.append(7, "recent")
    attempts = [
        # a horizon less than a day old lets nothing through
        ("SELECT set_config('actor_admin.prune_before', (now() - interval '1 hour')::text, true)",
         "DELETE FROM company_events"),
        # an old horizon does not let a newer row through
        ("SELECT set_config('actor_admin.prune_before', (now() - interval '30 days')::text, true)",
         "DELETE FROM company_events"),
        ("SELECT set_config('actor_admin.prune_before', (now() - interval '30 days')::text, true)",
         "UPDATE company_events SET type = 'x'"),
    ]
    for state, query in attempts:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            async with open_transaction(pg_dsn) as tx:
                await tx(state)
                await tx(query)
    assert len(await store.events.list(7)) == 1


async def test_a_run_yields_while_another_node_prunes(store: Store, pg_dsn: str) -> None:
    await old_messages(pg_dsn, 5)
    async with open_transaction(pg_dsn) as other_node:
        await other_node("SELECT pg_advisory_xact_lock($1)", RETENTION_LOCK_KEY)
        run = await Pruner(store.retention, policy()).prune_once()
    assert (run.outcome, run.pruned["messages"]) == ("yielded", 0)
    assert (await Pruner(store.retention, policy()).prune_once()).pruned["messages"] == 5


async def test_a_row_a_writer_holds_is_skipped_not_waited_for(store: Store, pg_dsn: str) -> None:
    await old_messages(pg_dsn, 20)
    async with open_transaction(pg_dsn) as writer:
        await writer("UPDATE messages SET status = 'read' WHERE wa_id = 'old-3'")
        with trio.fail_after(5):  # a plain DELETE would wait here until the writer commits
            run = await Pruner(store.retention, policy()).prune_once()
        assert run.pruned["messages"] == 19
    assert (await Pruner(store.retention, policy()).prune_once()).pruned["messages"] == 1


@pytest.fixture
async def instrumented(aio_loop: object, pg_empty_dsn: str, credentials_keyring: Keyring) -> AsyncIterator[Store]:
    """A store on a database of its own whose ``messages`` logs every DELETE statement: its transaction
    and how many rows it removed (the schema changes, so not the shared ``pg_dsn``)."""
    await migrate(pg_empty_dsn)
    await sql(pg_empty_dsn, "CREATE TABLE delete_log (xid bigint, rows bigint, at timestamptz)")
    await sql(
        pg_empty_dsn,
        "CREATE FUNCTION log_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "INSERT INTO delete_log SELECT txid_current(), count(*), clock_timestamp() FROM gone; RETURN NULL; END $$",
    )
    await sql(
        pg_empty_dsn,
        "CREATE TRIGGER log_delete AFTER DELETE ON messages REFERENCING OLD TABLE AS gone "
        "FOR EACH STATEMENT EXECUTE FUNCTION log_delete()",
    )
    async with open_store(pg_empty_dsn, pool_size=4, credentials_keys=credentials_keyring) as opened:
        yield opened


async def test_each_batch_is_its_own_short_transaction_and_writers_are_never_held_up(
    instrumented: Store, pg_empty_dsn: str
) -> None:
    dsn = pg_empty_dsn
    await old_messages(dsn, 6000)
    waits: list[float] = []
    done = trio.Event()

    async def writer() -> None:
        # An actor's writes meanwhile: a new message, and a status update of the newest old row
        # (the last one the job reaches). Each must finish well within a batch, never wait for the run.
        n = 0
        while not done.is_set():
            n += 1
            started = trio.current_time()
            assert await instrumented.messages.insert_inbound(7, f"new-{n}", PHONE, "hi")
            await sql(dsn, "UPDATE messages SET status = 'read' WHERE wa_id = 'old-1'")
            waits.append(trio.current_time() - started)
            await trio.sleep(0.005)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        run = await Pruner(instrumented.retention, policy(batch_rows=500, pause_s=0.02)).prune_once()
        done.set()

    # 12 full batches, then the one that finds nothing left (old-1 may be skipped while the writer
    # holds it, and then the twelfth batch is the last).
    assert run.pruned["messages"] >= 5999
    log = await sql(dsn, "SELECT xid, rows FROM delete_log ORDER BY at")
    assert len(log) in (12, 13)
    assert all(row["rows"] <= 500 for row in log)
    assert len({row["xid"] for row in log}) == len(log)  # one transaction per batch
    assert waits and max(waits) < 1.0
    assert await count(dsn, "SELECT count(*) FROM messages WHERE wa_id LIKE 'new-%'") == len(waits) > 0


# -- the schedule, on trio's clock (a double stands in for PostgreSQL) -----------------------------------


class Batches:
    """Answers like ``Retention.prune_batch``: ``backlog`` rows per table, or an outage."""

    def __init__(self, backlog: int = 0) -> None:
        self.backlog = {"messages": backlog, "company_events": 0, "outbox": 0}
        self.calls: list[tuple[float, str]] = []
        self.down = False

    async def prune_batch(self, table: str, *, days: int, limit: int) -> int | None:
        self.calls.append((trio.current_time(), table))
        if self.down:
            from actor_admin.store import StoreUnavailable

            raise StoreUnavailable("PostgreSQL is unavailable")
        deleted = min(limit, self.backlog[table])
        self.backlog[table] -= deleted
        return deleted


async def test_the_job_runs_a_minute_after_start_then_every_interval(autojump_clock: trio.testing.MockClock) -> None:
    batches = Batches()
    pruner = Pruner(batches, policy(first_run_after_s=60, interval_s=3600))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pruner.run)
        await trio.sleep(3 * 3600)
        nursery.cancel_scope.cancel()
    runs = sorted({at for at, table in batches.calls if table == "messages"})
    assert runs == [60.0, 3660.0, 7260.0]
    assert pruner.runs_total["done"] == 3


async def test_a_backlog_is_pruned_batch_after_batch_with_a_pause_between(
    autojump_clock: trio.testing.MockClock,
) -> None:
    batches = Batches(backlog=3500)
    run = await Pruner(batches, policy(batch_rows=1000, pause_s=0.5)).prune_once()
    times = [at for at, table in batches.calls if table == "messages"]
    assert times == [0.0, 0.5, 1.0, 1.5]
    assert run.pruned["messages"] == 3500 and run.duration_s == 1.5


async def test_a_run_that_meets_an_outage_fails_and_the_next_one_tries_again(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    batches = Batches(backlog=10)
    batches.down = True
    pruner = Pruner(batches, policy(first_run_after_s=60, interval_s=3600))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pruner.run)
        await trio.sleep(61)
        assert pruner.last_run is not None and pruner.last_run.outcome == "failed"
        batches.down = False
        await trio.sleep(3600)
        nursery.cancel_scope.cancel()
    assert pruner.last_run.outcome == "done" and pruner.pruned_total["messages"] == 10
    assert any("retention failed" in r.getMessage() and "unavailable" in r.getMessage() for r in caplog.records)
