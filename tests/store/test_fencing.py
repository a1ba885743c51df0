"""Fencing refused by PostgreSQL itself: a write stating a fence that is no longer the salon's current
one is refused by the triggers of ``sql/002_cluster.sql`` on every table an actor writes; writers that
state no fence are not checked; an ownership change and a fenced transaction never interleave."""

from __future__ import annotations

import asyncpg
import pytest
import trio

from actor_admin.store import FENCED_SQLSTATE, Claim, Fenced, Keyring, Member, Store, Takeover, open_store
from actor_admin.store._db import Conn

from ._ownership_helpers import add_companies, open_transaction, sql, wait_for_lock_waiters

pytestmark = pytest.mark.integration

A = Member("node-a", "inc-a", "1.0")
B = Member("node-b", "inc-b", "1.0")
SALON = 7

# One statement per table and operation an actor performs for its salon ($1 = salon_id).
WRITES = {
    "companies update": "UPDATE companies SET whatsapp_connected = true WHERE salon_id = $1",
    "companies insert": "INSERT INTO companies (salon_id) VALUES ($1 + 1000)",
    "companies delete": "DELETE FROM companies WHERE salon_id = $1",
    "credentials upsert": "INSERT INTO whatsapp_credentials (salon_id, blob, key_id) VALUES ($1, '\\x02', 'k') "
                          "ON CONFLICT (salon_id) DO UPDATE SET blob = EXCLUDED.blob",
    "credentials update": "UPDATE whatsapp_credentials SET blob = '\\x01' WHERE salon_id = $1",
    "credentials delete": "DELETE FROM whatsapp_credentials WHERE salon_id = $1",
    "events insert": "INSERT INTO company_events (salon_id, type) VALUES ($1, 'connected')",
    "messages insert": "INSERT INTO messages (salon_id, direction, wa_id, peer, text, status) "
                       "VALUES ($1, 'in', 'WA-2', '79001112233', 'hi', 'received')",
    "messages update": "UPDATE messages SET published_at = now() WHERE salon_id = $1",
    "messages delete": "DELETE FROM messages WHERE salon_id = $1",
    "outbox insert": "INSERT INTO outbox (kind, salon_id, payload) VALUES ('activation', $1, '{}')",
    "outbox update": "UPDATE outbox SET attempts = attempts + 1 WHERE salon_id = $1",
}

ROWS_OF_EVERY_FENCED_TABLE = (
    "SELECT (SELECT json_agg(c ORDER BY salon_id) FROM companies c)::text, "
    "(SELECT json_agg(w ORDER BY salon_id) FROM whatsapp_credentials w)::text, "
    "(SELECT json_agg(e ORDER BY id) FROM company_events e)::text, "
    "(SELECT json_agg(m ORDER BY id) FROM messages m)::text, "
    "(SELECT json_agg(o ORDER BY id) FROM outbox o)::text"
)


async def _seed(pg_dsn: str) -> None:
    """A salon with a row in every fenced table, written without a fence (as webhooks and admin do)."""
    await add_companies(pg_dsn, [SALON, SALON + 1])
    await sql(pg_dsn, "INSERT INTO whatsapp_credentials (salon_id, blob, key_id) VALUES ($1, '\\x00', 'k')", SALON)
    await sql(pg_dsn, "INSERT INTO messages (salon_id, direction, wa_id, peer, text, status) "
                      "VALUES ($1, 'in', 'WA-1', '79001112233', 'hi', 'received')", SALON)
    await sql(pg_dsn, "INSERT INTO outbox (kind, salon_id, payload) VALUES ('activation', $1, '{}')", SALON)


async def _owned_twice(store: Store, pg_dsn: str) -> tuple[int, int]:
    """Salons SALON and SALON + 1 owned by node-a; returns (stale fence, current fence) of SALON."""
    await _seed(pg_dsn)
    await store.ownership.join(A)
    stale = (await store.ownership.claim(A, [Claim(SALON)]))[SALON]
    await store.ownership.release(A, {SALON: stale})
    current = (await store.ownership.claim(A, [Claim(SALON), Claim(SALON + 1)]))[SALON]
    return stale, current


async def _write_with_fence(pg_dsn: str, fence: int | None, statement: str) -> str | None:
    """Run ``statement`` in a transaction that states ``fence`` (none: no fence); the SQLSTATE it fails with."""
    try:
        async with open_transaction(pg_dsn) as tx:
            if fence is not None:
                await tx("SELECT set_config('actor_admin.fence', $1, true)", str(fence))
            await tx(statement, SALON)
    except asyncpg.PostgresError as exc:
        return str(exc.sqlstate)
    return None


@pytest.mark.parametrize("write", list(WRITES))
async def test_a_write_with_a_stale_fence_is_refused_by_the_trigger(store: Store, pg_dsn: str, write: str) -> None:
    stale, _ = await _owned_twice(store, pg_dsn)
    before = await sql(pg_dsn, ROWS_OF_EVERY_FENCED_TABLE)
    assert await _write_with_fence(pg_dsn, stale, WRITES[write]) == FENCED_SQLSTATE
    assert await sql(pg_dsn, ROWS_OF_EVERY_FENCED_TABLE) == before


@pytest.mark.parametrize("write", list(WRITES))
async def test_a_write_with_the_current_fence_passes(store: Store, pg_dsn: str, write: str) -> None:
    _, current = await _owned_twice(store, pg_dsn)
    if write == "companies insert":  # a new salon has no owner yet: nobody's fence covers it
        assert await _write_with_fence(pg_dsn, current, WRITES[write]) == FENCED_SQLSTATE
    else:
        assert await _write_with_fence(pg_dsn, current, WRITES[write]) is None


@pytest.mark.parametrize("write", list(WRITES))
async def test_a_write_without_a_fence_is_not_checked(store: Store, pg_dsn: str, write: str) -> None:
    await _owned_twice(store, pg_dsn)
    assert await _write_with_fence(pg_dsn, None, WRITES[write]) is None


async def test_a_fence_covers_only_its_own_salon(store: Store, pg_dsn: str) -> None:
    _, current = await _owned_twice(store, pg_dsn)
    other = "INSERT INTO company_events (salon_id, type) VALUES ($1 + 1, 'connected')"
    assert await _write_with_fence(pg_dsn, current, other) == FENCED_SQLSTATE


# A fence stated on the row itself, as a statement writing for many salons states it (sql/006_row_fence.sql).
ROW_WRITES = {
    "insert": "INSERT INTO messages (salon_id, direction, wa_id, peer, text, status, stated_fence) "
              "VALUES ($1, 'in', 'WA-2', '79001112233', 'hi', 'received', $2)",
    "update": "UPDATE messages SET published_at = now(), stated_fence = $2 WHERE salon_id = $1",
}


@pytest.mark.parametrize("write", list(ROW_WRITES))
async def test_a_fence_stated_on_the_row_is_checked_by_the_trigger_and_never_stored(
    store: Store, pg_dsn: str, write: str
) -> None:
    stale, current = await _owned_twice(store, pg_dsn)
    with pytest.raises(asyncpg.PostgresError) as refused:
        await sql(pg_dsn, ROW_WRITES[write], SALON, stale)
    assert refused.value.sqlstate == FENCED_SQLSTATE
    assert f"salon {SALON} is fenced: fence {stale} " in str(refused.value)  # how the store learns which salon
    assert (await sql(pg_dsn, "SELECT count(*) FROM messages WHERE published_at IS NOT NULL"))[0][0] == 0
    await sql(pg_dsn, ROW_WRITES[write], SALON, current)
    (row,) = await sql(
        pg_dsn,
        "SELECT count(*) AS rows, count(published_at) AS published, count(stated_fence) AS kept FROM messages",
    )
    assert dict(row) == ({"rows": 2, "published": 0, "kept": 0} if write == "insert"
                         else {"rows": 1, "published": 1, "kept": 0})


async def test_the_batch_check_refuses_a_stale_fence_before_writing_even_where_nothing_would_change(
    store: Store, pg_dsn: str
) -> None:
    stale, current = await _owned_twice(store, pg_dsn)
    check = "SELECT actor_admin_check_fences($1::bigint[], $2::bigint[])"
    await sql(pg_dsn, check, [SALON, SALON, SALON + 1], [current, current, None])
    with pytest.raises(asyncpg.PostgresError) as refused:
        await sql(pg_dsn, check, [SALON + 1, SALON], [None, stale])
    assert refused.value.sqlstate == FENCED_SQLSTATE


async def test_a_released_salon_refuses_its_last_owners_fence(store: Store, pg_dsn: str) -> None:
    _, current = await _owned_twice(store, pg_dsn)
    await store.ownership.release(A, {SALON: current})
    assert await _write_with_fence(pg_dsn, current, WRITES["events insert"]) == FENCED_SQLSTATE


async def test_a_malformed_fence_is_an_error_not_a_pass(store: Store, pg_dsn: str) -> None:
    await _owned_twice(store, pg_dsn)
    try:
        async with open_transaction(pg_dsn) as tx:
            await tx("SELECT set_config('actor_admin.fence', '12 OR 1=1', true)")
            await tx(WRITES["events insert"], SALON)
    except asyncpg.PostgresError as exc:
        assert exc.sqlstate == "22023"
    else:
        pytest.fail("a malformed fence was accepted")


# --- run_fenced: the store's way to write as an owner --------------------------------------------


async def _append_event(conn: Conn) -> int:
    return int(await conn.fetchval(
        "INSERT INTO company_events (salon_id, type) VALUES ($1, 'connected') RETURNING id", SALON
    ))


async def test_run_fenced_writes_with_the_current_fence(store: Store, pg_dsn: str) -> None:
    _, current = await _owned_twice(store, pg_dsn)
    event_id = await store.ownership.run_fenced(SALON, current, _append_event)
    assert [e.id for e in await store.events.list(SALON)] == [event_id]


async def test_run_fenced_refuses_a_stale_fence_before_any_work(store: Store, pg_dsn: str) -> None:
    stale, current = await _owned_twice(store, pg_dsn)
    calls = 0

    async def work(conn: Conn) -> None:
        nonlocal calls
        calls += 1

    with pytest.raises(Fenced) as refused:
        await store.ownership.run_fenced(SALON, stale, work)
    assert (refused.value.salon_id, refused.value.fence, calls) == (SALON, stale, 0)
    assert f"current fence {current}" in str(refused.value)


async def test_run_fenced_maps_a_trigger_refusal_for_another_salon_and_rolls_back(store: Store, pg_dsn: str) -> None:
    _, current = await _owned_twice(store, pg_dsn)

    async def strays(conn: Conn) -> None:
        await _append_event(conn)
        await conn.execute("INSERT INTO company_events (salon_id, type) VALUES ($1, 'stray')", SALON + 1)

    with pytest.raises(Fenced):
        await store.ownership.run_fenced(SALON, current, strays)
    assert await store.events.list(SALON) == []


async def test_the_stated_fence_does_not_outlive_its_transaction(
    aio_loop: object, pg_dsn: str, credentials_keyring: Keyring
) -> None:
    async with open_store(pg_dsn, pool_size=1, credentials_keys=credentials_keyring) as single:
        stale, current = await _owned_twice(single, pg_dsn)
        await single.ownership.run_fenced(SALON, current, _append_event)
        # The same pooled connection, next user, no fence stated: not checked.
        await single.events.append(SALON, "webhook_uninstall")
        await single.ownership.release(A, {SALON: current})
        await single.events.append(SALON, "after_release")
        assert [e.type for e in await single.events.list(SALON)] == ["after_release", "webhook_uninstall", "connected"]
        assert stale < current


async def test_a_takeover_waits_for_a_fenced_transaction_in_flight(store: Store, pg_dsn: str) -> None:
    _, current = await _owned_twice(store, pg_dsn)
    await store.ownership.join(B)
    (dead,) = [n.ref for n in await store.ownership.nodes() if n.node_id == "node-a"]
    won: dict[int, int] | None = None

    async def take_over() -> None:
        nonlocal won
        won = await store.ownership.claim(B, [Claim(SALON, Takeover(dead, current))])

    async with trio.open_nursery() as nursery:
        async with open_transaction(pg_dsn) as tx:  # node-a's actor, mid-write
            await tx("SELECT set_config('actor_admin.fence', $1, true)", str(current))
            await tx(WRITES["events insert"], SALON)
            nursery.start_soon(take_over)
            await wait_for_lock_waiters(pg_dsn)
            assert won is None  # the takeover queues behind the fenced write
    assert won is not None and set(won) == {SALON}
    assert len(await store.events.list(SALON)) == 1  # the write that started first committed
    with pytest.raises(Fenced):
        await store.ownership.run_fenced(SALON, current, _append_event)
    assert await store.ownership.run_fenced(SALON, won[SALON], _append_event) > 0


async def test_a_fenced_write_waiting_on_a_takeover_is_refused_once_it_commits(store: Store, pg_dsn: str) -> None:
    _, current = await _owned_twice(store, pg_dsn)
    await store.ownership.join(B)
    outcome: BaseException | int | None = None

    async def write() -> None:
        nonlocal outcome
        try:
            outcome = await store.ownership.run_fenced(SALON, current, _append_event)
        except Fenced as exc:
            outcome = exc

    async with trio.open_nursery() as nursery:
        async with open_transaction(pg_dsn) as tx:  # a takeover, not yet committed
            await tx("UPDATE salon_owners SET node_id = 'node-b', fence = nextval('salon_owner_fence'), "
                     "cause = 'taken_after_expiry' WHERE salon_id = $1", SALON)
            nursery.start_soon(write)
            await wait_for_lock_waiters(pg_dsn)
            assert outcome is None
    assert isinstance(outcome, Fenced)
    assert await store.events.list(SALON) == []
