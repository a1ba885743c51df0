"""Repositories: one small class per table, trio-native methods, one asyncio crossing per call.

Absent rows are answered with ``None`` (or ``False`` for "nothing changed"), never an exception.
Timestamps are the database's ``now()``, so every node agrees on them whatever its own clock says.
"""

from __future__ import annotations

import builtins
import collections
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TypeVar, final

import asyncpg
import attrs
import trio_asyncio

from actor_admin.json_types import JSON
from actor_admin.runtime import GroupCommit, GroupCommitOptions, GroupCommitStatistics, open_group_commit
from actor_admin.session import INACTIVE_STATES, phone_from_jid

from ._crypto import Keyring
from ._db import Conn, Database, connect_aio
from ._errors import StoreUnavailable
from ._models import (
    ACTIVATION,
    INTEGRATION_STATUSES,
    Company,
    CompanyEvent,
    ConnectionRecord,
    CredentialOrigin,
    Direction,
    IntegrationStatus,
    MarketplaceUser,
    Message,
    MessageStatus,
    OutboxItem,
    OutboxStats,
    from_row,
)
from ._ownership import Fenced, refusal, run_fenced

log = logging.getLogger("actor_admin.store")

ACTIVATION_WINDOW_S = 3600.0
"""YClients accepts the activation callback within one hour of the user granting access."""

R = TypeVar("R")
T = TypeVar("T")

# Statements more than one method runs.
_COMPANY = "SELECT * FROM companies WHERE salon_id = $1"
# $3: only a company in one of these statuses changes (NULL: any).
_SET_STATUS = """
    UPDATE companies SET integration_status = $2, updated_at = now(),
        connected_at = CASE WHEN $2 = 'active' THEN now() ELSE connected_at END
    WHERE salon_id = $1 AND ($3::text[] IS NULL OR integration_status = ANY($3::text[]))
    RETURNING *
"""
# Due now; given up $5 seconds after $4 (NULL: now), never when $5 is NULL.
_ENQUEUE = """
    INSERT INTO outbox (kind, salon_id, payload, deadline)
    VALUES ($1, $2, $3, COALESCE($4::timestamptz, now()) + make_interval(secs => $5))
    RETURNING id
"""
_APPEND_EVENT = "INSERT INTO company_events (salon_id, type, data) VALUES ($1, $2, $3) RETURNING id"
_DELETE_CREDENTIALS = "DELETE FROM whatsapp_credentials WHERE salon_id = $1"
_OUTBOUND = "SELECT * FROM messages WHERE salon_id = $1 AND idempotency_key = $2"
# The start of a statement that writes a batch of rows of many salons, each row stating its writer's
# fence ($1 salon ids, $2 fences — NULL: none —, $3… the rows' fields). The statement gives each row its
# fence as ``stated_fence``, which the fence trigger checks: one rule for every fenced write
# (sql/006_row_fence.sql, docs/cluster.md#fencing-who-may-write-what-with-which-fence). It must read
# ``locked`` or ``checked`` before it writes.
_FENCED_BATCH = """
    WITH batch AS (
        SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                             $6::timestamptz[], $7::text[])
            WITH ORDINALITY AS b(salon_id, fence, wa_id, peer, text, at, peer_lid, ord)
    ),"""
# Every row of an insert reaches the trigger (BEFORE INSERT fires before ON CONFLICT looks), so the
# statement only takes the owner rows' locks up front, in salon order: the lock order of salon_owners
# (docs/cluster.md), so the triggers' locks, taken in the batch's order, never wait behind an ownership
# change that waits for them.
_LOCKED = """
    locked AS (
        SELECT count(*) FROM (
            SELECT FROM salon_owners WHERE salon_id = ANY(ARRAY(SELECT salon_id FROM batch WHERE fence IS NOT NULL))
            ORDER BY salon_id FOR SHARE
        ) AS owners
    )"""
# A mark may change no row, which no trigger would see: its (salon, fence) is checked up front, in salon
# order, as a fenced transaction's is (actor_admin_check_fences).
_CHECKED = """
    checked AS (SELECT actor_admin_check_fences($1::bigint[], $2::bigint[]))"""


# Unpublished inbound rows within retention ($1 days; 0: kept forever, the cutoff store/_retention.py
# prunes at), read through the partial index on (salon_id, id) of sql/007_unpublished_by_salon.sql.
_UNPUBLISHED = """m.direction = 'in' AND m.published_at IS NULL
    AND ($1::int = 0 OR m.at >= now() - make_interval(days => $1::int))"""
_UNPUBLISHED_SALONS = f"""
    SELECT m.salon_id, count(*) AS n, min(m.id) AS first_id FROM messages m
    WHERE {_UNPUBLISHED} GROUP BY m.salon_id"""
_UNPUBLISHED_OWNED_SALONS = f"""
    SELECT m.salon_id, count(*) AS n, min(m.id) AS first_id
    FROM salon_owners o JOIN messages m ON m.salon_id = o.salon_id
    WHERE o.node_id = $2 AND {_UNPUBLISHED} GROUP BY m.salon_id"""
# Per salon, not "ORDER BY id LIMIT n" over them all: PostgreSQL would walk the primary key backwards
# through the whole table, filtering, once its statistics counted more unpublished rows than remain.
_UNPUBLISHED_OF = f"""
    SELECT m.* FROM unnest($2::bigint[]) AS s(salon_id)
    CROSS JOIN LATERAL (
        SELECT * FROM messages m WHERE m.salon_id = s.salon_id AND {_UNPUBLISHED} ORDER BY m.id LIMIT $3
    ) m
    ORDER BY m.salon_id, m.id"""


def _check_status(status: str) -> None:
    if status not in INTEGRATION_STATUSES:
        raise ValueError(f"unknown integration_status {status!r}")


async def _enqueue(
    conn: Conn,
    kind: str,
    salon_id: int,
    payload: JSON,
    deadline_s: float | None,
    *,
    since: datetime | None = None,
) -> int:
    """Add an outbox row due now, given up ``deadline_s`` after ``since`` (default: now); its id."""
    return int(await conn.fetchval(_ENQUEUE, kind, salon_id, dict(payload), since, deadline_s))


async def _write(
    db: Database, salon_id: int, fence: int, work: Callable[[Conn], Awaitable[T]], *,
    transaction: bool = False, retry: bool = False,
) -> T:
    """A write a salon's actor makes: checked against ``fence`` unless it is 0 (one node, no fence).

    See docs/cluster.md (fencing). A fenced write is never retried here: its one transaction either
    commits under the current fence or raises ``Fenced``.
    """
    if fence:
        return await run_fenced(db, salon_id, fence, work)
    return await db.run(work, transaction=transaction, retry=retry)


def _account(raw: str | None) -> str | None:
    """A linked account as stored: the number's digits (never the device suffix); None if not a number."""
    digits = phone_from_jid(raw) if raw else ""
    return digits if 5 <= len(digits) <= 20 else None


class _Repository:
    """A table's methods over the shared :class:`Database`; the small reads share their plumbing."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def _one(self, cls: type[R], sql: str, *args: object, retry: bool = True) -> R | None:
        """The record of the first row ``sql`` returns, or None (``retry`` only for idempotent ``sql``)."""

        async def work(conn: Conn) -> R | None:
            row = await conn.fetchrow(sql, *args)
            return None if row is None else from_row(cls, row)

        return await self._db.run(work, retry=retry)

    async def _all(self, cls: type[R], sql: str, *args: object) -> builtins.list[R]:
        """The records of every row the query ``sql`` returns."""

        async def work(conn: Conn) -> builtins.list[R]:
            return [from_row(cls, r) for r in await conn.fetch(sql, *args)]

        return await self._db.run(work, retry=True)


@final
class Companies(_Repository):
    """The ``companies`` table: one row per salon that ever installed the app."""

    async def upsert_registration(
        self, salon_id: int, *, title: str | None = None, user: MarketplaceUser | None = None
    ) -> Company:
        """Record a successful marketplace redirect for ``salon_id``; returns the company.

        A new salon starts as ``pending_whatsapp``. An ``active`` salon stays ``active`` and an
        ``activating`` one keeps its activation in flight; any other (``frozen``, ``uninstalled``,
        ``activation_failed``) is re-activated to ``pending_whatsapp``. The 1-hour activation window
        restarts (``registered_at = now()``). Known fields are not erased by a redirect lacking them.
        """
        user = user or MarketplaceUser()

        async def work(conn: Conn) -> Company:
            row = await conn.fetchrow(
                """
                INSERT INTO companies AS c (salon_id, title, user_id, user_name, user_phone, user_email)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (salon_id) DO UPDATE SET
                    title = COALESCE(EXCLUDED.title, c.title),
                    user_id = COALESCE(EXCLUDED.user_id, c.user_id),
                    user_name = COALESCE(EXCLUDED.user_name, c.user_name),
                    user_phone = COALESCE(EXCLUDED.user_phone, c.user_phone),
                    user_email = COALESCE(EXCLUDED.user_email, c.user_email),
                    integration_status = CASE WHEN c.integration_status IN ('active', 'activating')
                                              THEN c.integration_status ELSE 'pending_whatsapp' END,
                    registered_at = now(),
                    updated_at = now()
                RETURNING *
                """,
                salon_id, title, user.user_id, user.name, user.phone, user.email,
            )
            return from_row(Company, row)

        return await self._db.run(work, retry=True)  # idempotent upsert

    async def get(self, salon_id: int) -> Company | None:
        return await self._one(Company, _COMPANY, salon_id)

    async def list(
        self, *, integration_status: IntegrationStatus | None = None, page: int = 1, page_size: int = 50
    ) -> tuple[builtins.list[Company], int]:
        """One page (1-based) of companies ordered by ``salon_id``, and the total matching the filter."""
        if page < 1 or page_size < 1:
            raise ValueError("page and page_size start at 1")
        if integration_status is not None:
            _check_status(integration_status)

        async def work(conn: Conn) -> tuple[builtins.list[Company], int]:
            where = "WHERE $1::text IS NULL OR integration_status = $1"
            rows = await conn.fetch(
                f"SELECT * FROM companies {where} ORDER BY salon_id LIMIT $2 OFFSET $3",
                integration_status, page_size, (page - 1) * page_size,
            )
            total = await conn.fetchval(f"SELECT count(*) FROM companies {where}", integration_status)
            return [from_row(Company, r) for r in rows], int(total)

        return await self._db.run(work, transaction=True, retry=True)

    async def set_integration_status(
        self,
        salon_id: int,
        status: IntegrationStatus,
        *,
        only_from: Collection[IntegrationStatus] | None = None,
    ) -> Company | None:
        """Set ``integration_status`` (``active`` also stamps ``connected_at``).

        With ``only_from``, only a company currently in one of those statuses changes. Returns the
        updated company, or None if there is no such company or it was not in ``only_from``.
        """
        _check_status(status)
        allowed = None if only_from is None else list(only_from)
        return await self._one(Company, _SET_STATUS, salon_id, status, allowed, retry=False)

    async def record_connection(
        self,
        salon_id: int,
        phone: str,
        *,
        activation_payload: Callable[[str], JSON] | None = None,
        window_s: float = ACTIVATION_WINDOW_S,
        fence: int = 0,
    ) -> ConnectionRecord | None:
        """Persist "WhatsApp is connected as ``phone``" and, atomically with it, the activation call.

        ``phone`` is stored as :func:`~actor_admin.session.phone_from_jid` reads it (digits only, a
        device suffix such as ``:15`` dropped; ValueError when no digit is left). When the company
        is ``pending_whatsapp`` and ``activation_payload`` is given, a fresh ``api_key`` is generated,
        the status becomes ``activating`` and an ``activation`` outbox row is written in the same
        transaction with ``payload = activation_payload(api_key)`` and ``deadline = registered_at +
        window_s``. In any other status only the connection fields change, so a reconnect never
        activates twice. Returns None if there is no such company.
        """
        digits = phone_from_jid(phone)
        if not digits:
            raise ValueError(f"not a phone number: {phone!r}")

        async def work(conn: Conn) -> ConnectionRecord | None:
            status = await conn.fetchval(
                "SELECT integration_status FROM companies WHERE salon_id = $1 FOR UPDATE", salon_id
            )
            if status is None:
                return None
            make = activation_payload if status == "pending_whatsapp" else None
            # A new api_key (None: no activation now) also moves the company to ``activating``.
            api_key = None if make is None else secrets.token_hex(32)
            row = await conn.fetchrow(
                """
                UPDATE companies SET whatsapp_connected = true, whatsapp_phone = $2, whatsapp_connected_at = now(),
                    integration_status = CASE WHEN $3::text IS NULL THEN integration_status ELSE 'activating' END,
                    api_key = COALESCE($3, api_key), updated_at = now()
                WHERE salon_id = $1 RETURNING *
                """,
                salon_id, digits, api_key,
            )
            if make is None or api_key is None:
                return ConnectionRecord(from_row(Company, row), False, None)
            outbox_id = await _enqueue(conn, ACTIVATION, salon_id, make(api_key), window_s, since=row["registered_at"])
            return ConnectionRecord(from_row(Company, row), True, outbox_id)

        return await _write(self._db, salon_id, fence, work, transaction=True)

    async def mark_disconnected(self, salon_id: int, *, fence: int = 0) -> Company | None:
        """WhatsApp is no longer connected (the phone is kept for display)."""

        async def work(conn: Conn) -> Company | None:
            row = await conn.fetchrow(
                """
                UPDATE companies SET whatsapp_connected = false, disconnected_at = now(), updated_at = now()
                WHERE salon_id = $1 RETURNING *
                """,
                salon_id,
            )
            return None if row is None else from_row(Company, row)

        return await _write(self._db, salon_id, fence, work, retry=True)

    async def mark_frozen(self, salon_id: int) -> Company | None:
        """The ``freeze`` webhook: status ``frozen``, not connected; credentials are kept."""
        return await self._lifecycle(salon_id, "frozen", delete_credentials=False)

    async def mark_uninstalled(self, salon_id: int) -> Company | None:
        """The ``uninstall`` webhook: status ``uninstalled``, not connected, ``api_key`` cleared and the
        WhatsApp credentials deleted, all in one transaction."""
        return await self._lifecycle(salon_id, "uninstalled", delete_credentials=True)

    async def _lifecycle(
        self, salon_id: int, status: IntegrationStatus, *, delete_credentials: bool
    ) -> Company | None:
        async def work(conn: Conn) -> Company | None:
            row = await conn.fetchrow(
                """
                UPDATE companies SET integration_status = $2, whatsapp_connected = false,
                    disconnected_at = CASE WHEN whatsapp_connected THEN now() ELSE disconnected_at END,
                    api_key = CASE WHEN $3 THEN NULL ELSE api_key END, updated_at = now()
                WHERE salon_id = $1 RETURNING *
                """,
                salon_id, status, delete_credentials,
            )
            if row is not None and delete_credentials:
                await conn.execute(_DELETE_CREDENTIALS, salon_id)
            return None if row is None else from_row(Company, row)

        return await self._db.run(work, transaction=True, retry=True)

    async def list_with_credentials(self) -> builtins.list[Company]:
        """Companies to reconnect at start-up: stored credentials and not frozen or uninstalled."""
        return await self._all(
            Company,
            """
            SELECT c.* FROM companies c JOIN whatsapp_credentials w USING (salon_id)
            WHERE c.integration_status <> ALL($1::text[]) ORDER BY c.salon_id
            """,
            sorted(INACTIVE_STATES),
        )

    async def requeue_activation(
        self,
        salon_id: int,
        *,
        activation_payload: Callable[[str], JSON],
        window_s: float = ACTIVATION_WINDOW_S,
    ) -> ConnectionRecord | None:
        """Admin retry of a failed activation: a new ``activation`` outbox row with a fresh deadline.

        Only a company in ``activation_failed`` whose WhatsApp is connected is re-queued (YClients is
        told "installed" only once WhatsApp really works — the original's fault 8): it goes back to
        ``activating`` and a row with ``payload = activation_payload(api_key)`` and ``deadline = now()
        + window_s`` is written in the same transaction. Its ``api_key`` is kept (one is generated if
        it has none). Any other company is left alone and answered with ``activation_enqueued=False``;
        None if there is no such company.
        """

        async def work(conn: Conn) -> ConnectionRecord | None:
            row = await conn.fetchrow(_COMPANY + " FOR UPDATE", salon_id)
            if row is None:
                return None
            if row["integration_status"] != "activation_failed" or not row["whatsapp_connected"]:
                return ConnectionRecord(from_row(Company, row), False, None)
            api_key = row["api_key"] or secrets.token_hex(32)
            row = await conn.fetchrow(
                """
                UPDATE companies SET integration_status = 'activating', api_key = $2, updated_at = now()
                WHERE salon_id = $1 RETURNING *
                """,
                salon_id, api_key,
            )
            outbox_id = await _enqueue(conn, ACTIVATION, salon_id, activation_payload(api_key), window_s)
            return ConnectionRecord(from_row(Company, row), True, outbox_id)

        return await self._db.run(work, transaction=True)


@final
class Credentials(_Repository):
    """Encrypted WhatsApp device credentials, one blob per salon (see :class:`Keyring`), with their origin."""

    def __init__(self, db: Database, keyring: Keyring) -> None:
        super().__init__(db)
        self._keyring = keyring

    async def save(
        self, salon_id: int, data: bytes, *, transport: str | None = None, account: str | None = None, fence: int = 0
    ) -> bool:
        """Encrypt and store (replacing any previous blob), with their origin: the ``transport`` that made
        them and the ``account`` they belong to (None: not known). False if there is no such company."""
        blob, key_id = self._keyring.encrypt(salon_id, data)
        account = _account(account)

        async def work(conn: Conn) -> bool:
            try:
                await conn.execute(
                    """
                    INSERT INTO whatsapp_credentials (salon_id, blob, key_id, transport, account)
                    VALUES ($1, $2, $3, $4, $5)
                    ON CONFLICT (salon_id) DO UPDATE
                        SET blob = EXCLUDED.blob, key_id = EXCLUDED.key_id, transport = EXCLUDED.transport,
                            account = EXCLUDED.account, updated_at = now()
                    """,
                    salon_id, blob, key_id, transport, account,
                )
            except asyncpg.ForeignKeyViolationError:
                return False
            return True

        return await _write(self._db, salon_id, fence, work, retry=True)

    async def load(self, salon_id: int) -> bytes | None:
        """The decrypted credentials, or None if none are stored.

        Raises:
            CredentialsError: the blob is tampered, of another salon, or under an unknown key.
        """

        async def work(conn: Conn) -> asyncpg.Record | None:
            row: asyncpg.Record | None = await conn.fetchrow(
                "SELECT blob, key_id FROM whatsapp_credentials WHERE salon_id = $1", salon_id
            )
            return row

        row = await self._db.run(work, retry=True)
        if row is None:
            return None
        return self._keyring.decrypt(salon_id, bytes(row["blob"]), row["key_id"])

    async def origin(self, salon_id: int) -> CredentialOrigin | None:
        """Which transport made the stored credentials, for which account; None if none are stored."""
        return await self._one(
            CredentialOrigin, "SELECT transport, account FROM whatsapp_credentials WHERE salon_id = $1", salon_id
        )

    async def confirm(self, salon_id: int, transport: str, account: str | None, *, fence: int = 0) -> bool:
        """The stored credentials connected through ``transport`` as ``account``: record that as their
        origin (an unknown account stays as it was). False if none are stored or nothing changed."""
        account = _account(account)

        async def work(conn: Conn) -> bool:
            status = await conn.execute(
                """
                UPDATE whatsapp_credentials SET transport = $2, account = COALESCE($3, account)
                WHERE salon_id = $1
                    AND (transport IS DISTINCT FROM $2 OR account IS DISTINCT FROM COALESCE($3, account))
                """,
                salon_id, transport, account,
            )
            return bool(status != "UPDATE 0")

        return await _write(self._db, salon_id, fence, work, retry=True)

    async def delete(self, salon_id: int, *, fence: int = 0) -> bool:
        """Forget the credentials; False if there were none."""

        async def work(conn: Conn) -> bool:
            status = await conn.execute(_DELETE_CREDENTIALS, salon_id)
            return bool(status != "DELETE 0")

        return await _write(self._db, salon_id, fence, work, retry=True)

    async def rotate(self) -> int:
        """Re-encrypt every blob not under the keyring's current key; returns how many were rewritten.

        One transaction with the rows locked, so a concurrent ``save`` cannot be overwritten with stale
        data. Raises :class:`CredentialsError` (and changes nothing) if a blob cannot be decrypted.
        """
        keyring = self._keyring

        async def work(conn: Conn) -> int:
            rows = await conn.fetch(
                "SELECT salon_id, blob, key_id FROM whatsapp_credentials WHERE key_id <> $1 FOR UPDATE",
                keyring.current_id,
            )
            for row in rows:
                plain = keyring.decrypt(row["salon_id"], bytes(row["blob"]), row["key_id"])
                blob, key_id = keyring.encrypt(row["salon_id"], plain)
                await conn.execute(
                    "UPDATE whatsapp_credentials SET blob = $2, key_id = $3, updated_at = now() "
                    "WHERE salon_id = $1",
                    row["salon_id"], blob, key_id,
                )
            return len(rows)

        return await self._db.run(work, transaction=True)


@final
class Events(_Repository):
    """The append-only ``company_events`` audit log."""

    async def append(self, salon_id: int, type: str, data: JSON | None = None, *, fence: int = 0) -> int:
        """Record an event; returns its id."""
        payload = dict(data or {})

        async def work(conn: Conn) -> int:
            return int(await conn.fetchval(_APPEND_EVENT, salon_id, type, payload))

        return await _write(self._db, salon_id, fence, work)

    async def list(self, salon_id: int, *, limit: int = 100) -> builtins.list[CompanyEvent]:
        """The latest ``limit`` events of a salon, newest first."""
        return await self._all(
            CompanyEvent, "SELECT * FROM company_events WHERE salon_id = $1 ORDER BY id DESC LIMIT $2", salon_id, limit
        )


@final
class Outbox(_Repository):
    """Calls to YClients waiting for delivery (see ``sql/001_initial.sql`` for the lease scheme)."""

    async def enqueue(
        self, kind: str, salon_id: int, payload: JSON, *, deadline_s: float | None = None
    ) -> int:
        """Add a call due now; ``deadline_s`` from now after which it should be given up. Returns its id."""

        async def work(conn: Conn) -> int:
            return await _enqueue(conn, kind, salon_id, payload, deadline_s)

        return await self._db.run(work)

    async def get(self, item_id: int) -> OutboxItem | None:
        return await self._one(OutboxItem, "SELECT * FROM outbox WHERE id = $1", item_id)

    async def claim_due(
        self, limit: int = 10, *, lease_s: float = 60.0, now: datetime | None = None
    ) -> list[OutboxItem]:
        """Claim up to ``limit`` due items, oldest due first, for one delivery attempt each.

        Claiming counts the attempt and pushes ``next_attempt_at`` ``lease_s`` ahead, so concurrent
        claimers (``FOR UPDATE SKIP LOCKED``) never get the same item, and an item whose worker died
        becomes due again after the lease. ``now`` overrides the database clock (tests).
        """

        async def work(conn: Conn) -> list[OutboxItem]:
            rows = await conn.fetch(
                """
                WITH due AS (
                    SELECT id FROM outbox
                    WHERE delivered_at IS NULL AND failed_at IS NULL
                      AND next_attempt_at <= COALESCE($2::timestamptz, now())
                    ORDER BY next_attempt_at, id LIMIT $1
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE outbox o SET attempts = o.attempts + 1,
                    next_attempt_at = COALESCE($2::timestamptz, now()) + make_interval(secs => $3)
                FROM due WHERE o.id = due.id
                RETURNING o.*
                """,
                limit, now, lease_s,
            )
            return sorted((from_row(OutboxItem, r) for r in rows), key=lambda i: i.id)

        return await self._db.run(work, transaction=True)

    async def mark_delivered(
        self, item_id: int, *, integration_status: IntegrationStatus | None = None
    ) -> bool:
        """The call succeeded. With ``integration_status``, the item's company is set to it in the same
        transaction (``active`` after an activation). False if the item is unknown or already final."""
        return await self._finish(item_id, "delivered_at", None, integration_status)

    async def mark_failed(
        self, item_id: int, error: str, *, integration_status: IntegrationStatus | None = None
    ) -> bool:
        """Give the call up for good (``activation_failed`` for an activation past its deadline)."""
        return await self._finish(item_id, "failed_at", error, integration_status)

    async def _finish(
        self, item_id: int, column: str, error: str | None, status: IntegrationStatus | None
    ) -> bool:
        if status is not None:
            _check_status(status)

        async def work(conn: Conn) -> bool:
            salon_id = await conn.fetchval(
                f"""
                UPDATE outbox SET {column} = now(), last_error = COALESCE($2, last_error)
                WHERE id = $1 AND delivered_at IS NULL AND failed_at IS NULL RETURNING salon_id
                """,
                item_id, error,
            )
            if salon_id is None:
                return False
            if status is not None:
                await conn.execute(_SET_STATUS, salon_id, status, None)
            return True

        return await self._db.run(work, transaction=True)

    async def mark_retry(self, item_id: int, *, delay_s: float, error: str, attempt: int | None = None) -> bool:
        """The attempt failed; try again ``delay_s`` from now. False if unknown or already final.

        ``attempt`` (the item's ``attempts`` as its claim returned it) fences the retry to that claim:
        once the lease lapsed and another worker claimed the item, its later claim is left alone
        (False) — moving its ``next_attempt_at`` up would let a third claim send the call again while
        the current one is in flight.
        """

        async def work(conn: Conn) -> bool:
            status = await conn.execute(
                """
                UPDATE outbox SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3
                WHERE id = $1 AND delivered_at IS NULL AND failed_at IS NULL
                  AND ($4::int IS NULL OR attempts = $4)
                """,
                item_id, delay_s, error, attempt,
            )
            return bool(status != "UPDATE 0")

        return await self._db.run(work, retry=True)

    async def stats(self) -> OutboxStats:
        async def work(conn: Conn) -> OutboxStats:
            row = await conn.fetchrow(
                """
                SELECT count(*) FILTER (WHERE delivered_at IS NULL AND failed_at IS NULL) AS pending,
                       extract(epoch FROM now() - min(created_at)
                               FILTER (WHERE delivered_at IS NULL AND failed_at IS NULL)) AS oldest,
                       count(*) FILTER (WHERE failed_at IS NOT NULL) AS failed
                FROM outbox
                """
            )
            oldest = row["oldest"]
            return OutboxStats(
                pending=int(row["pending"]),
                oldest_pending_s=None if oldest is None else float(oldest),
                failed=int(row["failed"]),
            )

        return await self._db.run(work, retry=True)

    async def fail_overdue(self, *, error: str = "deadline_passed", limit: int = 100) -> list[OutboxItem]:
        """Give up every due item whose ``deadline`` has passed (by the database clock); return them.

        Only items not under a claim lease are taken (``next_attempt_at <= now()``), so a call that is
        in flight right now is never failed behind its worker's back — it finishes, and if it must
        retry, the retry is failed here once due. For an ``activation`` item the company goes from
        ``activating`` to ``activation_failed`` in the same transaction (any other status is kept:
        an ``active`` or ``uninstalled`` company is not the window's business any more).
        """

        async def work(conn: Conn) -> list[OutboxItem]:
            rows = await conn.fetch(
                """
                WITH overdue AS (
                    SELECT id FROM outbox
                    WHERE delivered_at IS NULL AND failed_at IS NULL
                      AND deadline IS NOT NULL AND deadline <= now() AND next_attempt_at <= now()
                    ORDER BY id LIMIT $1
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE outbox o SET failed_at = now(), last_error = $2
                FROM overdue WHERE o.id = overdue.id
                RETURNING o.*
                """,
                limit, error,
            )
            salon_ids = sorted({r["salon_id"] for r in rows if r["kind"] == ACTIVATION})
            if salon_ids:
                await conn.execute(
                    """
                    UPDATE companies SET integration_status = 'activation_failed', updated_at = now()
                    WHERE salon_id = ANY($1::bigint[]) AND integration_status = 'activating'
                    """,
                    salon_ids,
                )
            return sorted((from_row(OutboxItem, r) for r in rows), key=lambda i: i.id)

        return await self._db.run(work, transaction=True)


@final
@attrs.frozen
class InboundRow:
    """An inbound message to store, with the fence its salon's actor writes under (0: none)."""

    salon_id: int
    wa_id: str
    peer: str
    text: str
    fence: int = 0
    peer_lid: str | None = None
    at: datetime | None = None


@final
@attrs.frozen
class PublishedMark:
    """Inbound messages of one salon that are on the stream now, with the writer's fence."""

    salon_id: int
    wa_ids: tuple[str, ...]
    fence: int = 0


Batched = TypeVar("Batched", InboundRow, PublishedMark)


@final
@attrs.frozen
class UnpublishedSalon:
    """A salon with inbound messages not yet on the stream: how many, and the oldest one's id."""

    salon_id: int
    count: int
    first_id: int


@final
@attrs.frozen
class Unpublished:
    """A batch of unpublished inbound messages, each salon's oldest first, each with its salon's
    current fence (0: unfenced); which of the salons asked about the node owns (all of them without a
    node), and which of those the batch took the whole backlog of (as of its read)."""

    messages: tuple[tuple[Message, int], ...]
    owned: frozenset[int]
    drained: frozenset[int]


async def _fenced_batch(
    items: Sequence[Batched], write: Callable[[Sequence[Batched]], Awaitable[list[asyncpg.Record]]]
) -> tuple[set[tuple[int, str]], dict[tuple[int, int], Fenced]]:
    """``write`` the items in one statement, whose triggers check each row's fence. A stale fence fails
    the statement as a whole, naming its salon: that (salon, fence) is left out and the rest written
    again — one more statement per stale salon, which only a salon that just changed owner costs.

    Returns the (salon, wa_id) written and the refusal of each (salon, fence) left out. Any other
    error of PostgreSQL is raised.
    """
    refused: dict[tuple[int, int], Fenced] = {}
    while todo := [item for item in items if (item.salon_id, item.fence) not in refused]:
        try:
            answer = await write(todo)
        except asyncpg.PostgresError as exc:
            fenced = refusal(exc)
            if fenced is None or not any((i.salon_id, i.fence) == (fenced.salon_id, fenced.fence) for i in todo):
                raise
            refused[fenced.salon_id, fenced.fence] = fenced
        else:
            return {(r["salon_id"], r["wa_id"]) for r in answer}, refused
    return set(), refused


async def _one_by_one(write: Callable[[T], Awaitable[R]], items: Sequence[T]) -> list[R | Exception]:
    """Each item written alone, each answered with its result or its own error."""
    results: list[R | Exception] = []
    for item in items:
        try:
            results.append(await write(item))
        except Exception as exc:
            results.append(exc)
    return results


@final
class Messages(_Repository):
    """Inbound and outbound WhatsApp messages."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        #: While :meth:`grouped` is open: inbound inserts and publication marks of many actors,
        #: each batch written in one statement (docs/data.md#group-commit).
        self._inserts: GroupCommit[InboundRow, bool] | None = None
        self._marks: GroupCommit[PublishedMark, int] | None = None

    @asynccontextmanager
    async def grouped(self, options: GroupCommitOptions | None = None) -> AsyncIterator[None]:
        """While open, :meth:`insert_inbound` and :meth:`mark_published` calls of many tasks are
        written together: one statement per batch (docs/data.md#group-commit)."""

        def closed() -> Exception:
            return StoreUnavailable("the store's group commit has stopped")

        def dropped(marks: Sequence[PublishedMark], error: Exception) -> None:
            log.warning(
                "could not record that %d inbound messages were announced (they stay unpublished): %s",
                sum(len(m.wa_ids) for m in marks), error,
            )

        inserts = GroupCommit(self.insert_inbound_many, options or GroupCommitOptions(), closed=closed)
        marks = GroupCommit(self.mark_published_many, options or GroupCommitOptions(), closed=closed, dropped=dropped)
        async with open_group_commit(inserts), open_group_commit(marks):
            self._inserts, self._marks = inserts, marks
            try:
                yield
            finally:
                self._inserts = self._marks = None

    def group_statistics(self) -> dict[str, GroupCommitStatistics]:
        """The group commits' counts while :meth:`grouped` is open (else empty)."""
        groups = {"inbound_inserts": self._inserts, "published_marks": self._marks}
        return {name: group.statistics for name, group in groups.items() if group is not None}

    async def insert_inbound(
        self,
        salon_id: int,
        wa_id: str,
        peer: str,
        text: str,
        at: datetime | None = None,
        *,
        fence: int = 0,
        peer_lid: str | None = None,
    ) -> bool:
        """Store an inbound message; True only if it is new.

        Atomic (``ON CONFLICT DO NOTHING`` on ``(salon_id, direction, wa_id)``): of any number of
        concurrent or repeated deliveries of one WhatsApp message id, exactly one gets True.
        ``peer`` is ``""`` for a sender known only by its LID ``peer_lid`` (docs/data.md#messages).
        Within :meth:`grouped`, written in a batch with other salons' messages.

        Raises:
            Fenced: ``fence`` is not the salon's current one (nothing was written).
            StoreUnavailable: PostgreSQL cannot be reached (it was not written, or may have been).
        """
        row = InboundRow(salon_id, wa_id, peer, text, fence=fence, peer_lid=peer_lid, at=at)
        inserts = self._inserts
        if inserts is not None and inserts.running:
            return await inserts.submit(row)
        return await self._insert_one(row)

    async def _insert_one(self, row: InboundRow) -> bool:
        async def work(conn: Conn) -> bool:
            inserted = await conn.fetchval(
                """
                INSERT INTO messages (salon_id, direction, wa_id, peer, text, status, at, peer_lid)
                VALUES ($1, 'in', $2, $3, $4, 'received', COALESCE($5::timestamptz, now()), $6)
                ON CONFLICT (salon_id, direction, wa_id) DO NOTHING RETURNING id
                """,
                row.salon_id, row.wa_id, row.peer, row.text, row.at, row.peer_lid,
            )
            return inserted is not None

        # Not retried: if the first try committed but its answer was lost, a retry would say False.
        return await _write(self._db, row.salon_id, row.fence, work)

    async def insert_inbound_many(self, rows: Sequence[InboundRow]) -> list[bool | Exception]:
        """Store a batch of inbound messages of any salons in one statement; for each, in order: True
        if it is new, False if it is a duplicate (stored before, or earlier in the batch), or the
        :class:`Fenced` error its salon's stale fence met — the other salons' rows are written.

        Each row states its own fence to the fence triggers (docs/cluster.md, fencing), which check
        it as they check any fenced write; a salon whose fence is stale is left out of the batch. A
        row PostgreSQL rejects for another reason (a constraint) makes the batch fall back to one
        statement per row, so it fails alone.

        Raises:
            StoreUnavailable: PostgreSQL cannot be reached (nothing of the batch was written, or all).
        """
        if not rows:
            return []

        async def write(batch: Sequence[InboundRow]) -> list[asyncpg.Record]:
            async def work(conn: Conn) -> list[asyncpg.Record]:
                return list(await conn.fetch(
                    _FENCED_BATCH + _LOCKED + """
                    INSERT INTO messages (salon_id, direction, wa_id, peer, text, status, at, peer_lid, stated_fence)
                    SELECT b.salon_id, 'in', b.wa_id, b.peer, b.text, 'received', COALESCE(b.at, now()), b.peer_lid,
                           b.fence
                    FROM locked, batch b
                    ORDER BY b.ord
                    ON CONFLICT (salon_id, direction, wa_id) DO NOTHING
                    RETURNING salon_id, wa_id
                    """,
                    [r.salon_id for r in batch], [r.fence or None for r in batch],
                    [r.wa_id for r in batch], [r.peer for r in batch], [r.text for r in batch],
                    [r.at for r in batch], [r.peer_lid for r in batch],
                ))

            return await self._db.run(work)

        try:
            new, refused = await _fenced_batch(rows, write)
        except asyncpg.PostgresError:
            return await _one_by_one(self._insert_one, rows)
        results: list[bool | Exception] = []
        for row in rows:
            if (fenced := refused.get((row.salon_id, row.fence))) is not None:
                results.append(fenced)
            else:
                key = (row.salon_id, row.wa_id)
                results.append(key in new)
                new.discard(key)  # a repeat later in the batch is a duplicate
        return results

    async def insert_outbound(self, salon_id: int, idempotency_key: str, to: str, text: str) -> tuple[int, bool]:
        """Record a message to send as ``queued``; returns ``(id, created)``.

        The same ``idempotency_key`` for the same salon returns the first message's id with
        ``created=False`` — the caller must not send it again.
        """

        async def work(conn: Conn) -> tuple[int, bool]:
            new_id = await conn.fetchval(
                """
                INSERT INTO messages (salon_id, direction, peer, text, status, idempotency_key)
                VALUES ($1, 'out', $2, $3, 'queued', $4)
                ON CONFLICT (salon_id, idempotency_key) DO NOTHING RETURNING id
                """,
                salon_id, to, text, idempotency_key,
            )
            if new_id is not None:
                return int(new_id), True
            old = await conn.fetchrow(_OUTBOUND, salon_id, idempotency_key)
            return int(old["id"]), False

        return await self._db.run(work, transaction=True)

    async def get(self, message_id: int) -> Message | None:
        return await self._one(Message, "SELECT * FROM messages WHERE id = $1", message_id)

    async def set_status(self, message_id: int, status: MessageStatus, *, wa_id: str | None = None) -> bool:
        """Update a message's status (and its WhatsApp id once sent). False if there is no such message."""

        async def work(conn: Conn) -> bool:
            result = await conn.execute(
                "UPDATE messages SET status = $2, wa_id = COALESCE($3, wa_id) WHERE id = $1",
                message_id, status, wa_id,
            )
            return bool(result != "UPDATE 0")

        return await self._db.run(work, retry=True)

    async def latest(
        self, salon_id: int, direction: Direction | None = None, *, limit: int = 50
    ) -> list[Message]:
        """The latest messages of a salon, newest first, optionally of one direction."""
        return await self._all(
            Message,
            """
            SELECT * FROM messages WHERE salon_id = $1 AND ($2::text IS NULL OR direction = $2)
            ORDER BY at DESC, id DESC LIMIT $3
            """,
            salon_id, direction, limit,
        )

    async def unpublished_inbound(self, *, salon_id: int | None = None, limit: int = 100) -> list[Message]:
        """Inbound messages stored but not yet marked published to the inbound stream, oldest first.

        The actor publishes right after a successful :meth:`insert_inbound`; this finds what a crash
        between the two left behind."""
        return await self._all(
            Message,
            """
            SELECT * FROM messages WHERE direction = 'in' AND published_at IS NULL
              AND ($1::bigint IS NULL OR salon_id = $1)
            ORDER BY id LIMIT $2
            """,
            salon_id, limit,
        )

    async def unpublished_salons(
        self, *, node_id: str | None, retention_days: int
    ) -> tuple[builtins.list[UnpublishedSalon], int]:
        """The salons (those ``node_id`` owns; without it, all) with inbound messages not yet on the
        stream and still within retention (``retention_days``, 0: forever), and the newest message id
        of the table (0 when empty): a later call takes rows at or below it as left over, not in flight
        (docs/data.md#reannouncing)."""

        async def work(conn: Conn) -> tuple[builtins.list[UnpublishedSalon], int]:
            sql = _UNPUBLISHED_SALONS if node_id is None else _UNPUBLISHED_OWNED_SALONS
            args: tuple[object, ...] = (retention_days,) if node_id is None else (retention_days, node_id)
            rows = await conn.fetch(sql, *args)
            newest = await conn.fetchval("SELECT COALESCE(max(id), 0) FROM messages")
            return [UnpublishedSalon(r["salon_id"], r["n"], r["first_id"]) for r in rows], int(newest)

        return await self._db.run(work, retry=True)

    async def unpublished_waiting(self, *, retention_days: int, older_than_s: float) -> tuple[int, float | None]:
        """How many inbound messages of salons a node owns, within retention, have waited more than
        ``older_than_s`` seconds (by ``at``) to be announced, and the oldest one's wait (doctor's
        ``inbound`` line; a salon no node owns is not re-announced, docs/data.md#reannouncing)."""

        async def work(conn: Conn) -> tuple[int, float | None]:
            row = await conn.fetchrow(
                f"""
                SELECT count(*) AS n, EXTRACT(EPOCH FROM now() - min(m.at))::float8 AS oldest_s
                FROM salon_owners o JOIN messages m ON m.salon_id = o.salon_id
                WHERE o.node_id IS NOT NULL AND {_UNPUBLISHED} AND m.at < now() - make_interval(secs => $2)
                """,
                retention_days, older_than_s,
            )
            return int(row["n"]), row["oldest_s"]

        return await self._db.run(work, retry=True)

    async def unpublished_of(
        self, salons: Collection[int], *, node_id: str | None, retention_days: int, limit: int
    ) -> Unpublished:
        """About ``limit`` unpublished inbound messages of ``salons`` that ``node_id`` owns (without
        it: of every one of ``salons``, unfenced), within retention as :meth:`unpublished_salons`: the
        oldest of each of at most ``limit`` of those salons, an equal share each, salon by salon.

        One index range scan per salon (the partial index on ``(salon_id, id)``), so a batch costs its
        salons and its rows, never the whole backlog nor the table (docs/data.md#reannouncing)."""
        wanted = sorted(salons)

        async def work(conn: Conn) -> Unpublished:
            if node_id is None:
                fences = dict.fromkeys(wanted, 0)
            else:
                owned = await conn.fetch(
                    "SELECT salon_id, fence FROM salon_owners WHERE node_id = $1 AND salon_id = ANY($2::bigint[])",
                    node_id, wanted,
                )
                fences = {r["salon_id"]: r["fence"] for r in owned}
            asked = sorted(fences)[:limit]
            if not asked:
                return Unpublished((), frozenset(), frozenset())
            share = -(-limit // len(asked))
            rows = await conn.fetch(_UNPUBLISHED_OF, retention_days, asked, share)
            taken = collections.Counter(r["salon_id"] for r in rows)
            return Unpublished(
                tuple((from_row(Message, r), fences[r["salon_id"]]) for r in rows),
                frozenset(fences),
                frozenset(s for s in asked if taken[s] < share),
            )

        return await self._db.run(work, retry=True)

    async def mark_published(self, salon_id: int, wa_ids: Sequence[str], *, fence: int = 0) -> int:
        """Mark inbound messages as put on the stream; returns how many changed.

        Within :meth:`grouped`, written in a batch with other salons' marks."""
        mark = PublishedMark(salon_id, tuple(wa_ids), fence)
        marks = self._marks
        if marks is not None and marks.running:
            return await marks.submit(mark)
        return await self._mark_one(mark)

    async def note_published(self, salon_id: int, wa_ids: Sequence[str], *, fence: int = 0) -> None:
        """:meth:`mark_published` without waiting for the write, within :meth:`grouped` (there it
        joins the next batch of marks; one that fails — a stale fence, PostgreSQL down — is logged and
        its messages stay unpublished); outside it, the same as :meth:`mark_published`."""
        mark = PublishedMark(salon_id, tuple(wa_ids), fence)
        marks = self._marks
        if marks is not None and marks.running:
            await marks.enqueue(mark)
            return
        await self._mark_one(mark)

    async def note_published_many(self, marks: Sequence[tuple[int, Sequence[str], int]]) -> None:
        """:meth:`note_published` for each ``(salon_id, wa_ids, fence)``, in order; within :meth:`grouped`
        all queued at once, without a task switch for each (the inbound announcer's batch)."""
        group = self._marks
        if group is not None and group.running:
            await group.enqueue_many(PublishedMark(salon_id, tuple(wa_ids), fence) for salon_id, wa_ids, fence in marks)
            return
        for salon_id, wa_ids, fence in marks:
            await self._mark_one(PublishedMark(salon_id, tuple(wa_ids), fence))

    async def _mark_one(self, mark: PublishedMark) -> int:
        async def work(conn: Conn) -> int:
            result = await conn.execute(
                """
                UPDATE messages SET published_at = now()
                WHERE salon_id = $1 AND direction = 'in' AND wa_id = ANY($2::text[]) AND published_at IS NULL
                """,
                mark.salon_id, list(mark.wa_ids),
            )
            return int(result.split()[-1])

        return await _write(self._db, mark.salon_id, mark.fence, work, retry=True)

    async def mark_published_many(self, marks: Sequence[PublishedMark]) -> list[int | Exception]:
        """:meth:`mark_published` for a batch of marks of any salons in one statement: for each, in
        order, how many messages changed, or the :class:`Fenced` error its stale fence met (fences
        checked as in :meth:`insert_inbound_many`)."""
        if not marks:
            return []

        async def write(batch: Sequence[PublishedMark]) -> list[asyncpg.Record]:
            rows = [(m.salon_id, m.fence or None, wa_id) for m in batch for wa_id in m.wa_ids]

            async def work(conn: Conn) -> list[asyncpg.Record]:
                return list(await conn.fetch(
                    _FENCED_BATCH + _CHECKED + """,
                    targets AS (
                        -- Each message found by its unique key, then updated by id: a join would hash the
                        -- whole table once it outgrows the batch (a plan PostgreSQL picks for small tables).
                        SELECT (SELECT m.id FROM messages m
                                WHERE m.salon_id = b.salon_id AND m.direction = 'in' AND m.wa_id = b.wa_id) AS id,
                               b.fence
                        FROM checked, batch b
                    ),
                    fences AS (SELECT jsonb_object_agg(id, fence) AS by_id FROM targets WHERE id IS NOT NULL)
                    UPDATE messages SET published_at = now(),
                                        stated_fence = ((SELECT by_id FROM fences) ->> id::text)::bigint
                    WHERE id = ANY(ARRAY(SELECT id FROM targets)) AND published_at IS NULL
                    RETURNING salon_id, wa_id
                    """,
                    [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], None, None, None, None,
                ))

            return await self._db.run(work, retry=True)  # idempotent: only unmarked messages change

        try:
            changed, refused = await _fenced_batch(marks, write)
        except asyncpg.PostgresError:
            return await _one_by_one(self._mark_one, marks)
        results: list[int | Exception] = []
        for mark in marks:
            if (fenced := refused.get((mark.salon_id, mark.fence))) is not None:
                results.append(fenced)
            else:
                found = {(mark.salon_id, wa_id) for wa_id in mark.wa_ids} & changed
                changed -= found
                results.append(len(found))
        return results

    async def get_outbound(self, salon_id: int, idempotency_key: str) -> Message | None:
        """The outbound message a caller recorded under ``idempotency_key``, or None."""
        return await self._one(Message, _OUTBOUND, salon_id, idempotency_key)

    async def record_send_outcome(
        self, salon_id: int, idempotency_key: str, *, wa_id: str | None, error: str | None, fence: int = 0
    ) -> bool:
        """What became of an outbound message: ``sent`` with its WhatsApp id, or ``failed``.

        Matched by ``(salon_id, idempotency_key)``. ``error`` (or no ``wa_id``) means failed; the
        reason goes to ``company_events`` as ``message_send_failed`` in the same transaction (the
        messages table keeps no error text). Only a ``queued`` message changes, so a late or
        repeated outcome never turns a ``sent`` message back into ``failed``. False if nothing changed.
        """
        failed = error is not None or wa_id is None
        status: MessageStatus = "failed" if failed else "sent"

        async def work(conn: Conn) -> bool:
            message_id = await conn.fetchval(
                """
                UPDATE messages SET status = $3, wa_id = COALESCE($4, wa_id)
                WHERE salon_id = $1 AND idempotency_key = $2 AND direction = 'out' AND status = 'queued'
                RETURNING id
                """,
                salon_id, idempotency_key, status, None if failed else wa_id,
            )
            if message_id is None:
                return False
            if failed:
                await conn.execute(
                    _APPEND_EVENT,
                    salon_id,
                    "message_send_failed",
                    {"message_id": int(message_id), "idempotency_key": idempotency_key, "error": error or "no id"},
                )
            return True

        return await _write(self._db, salon_id, fence, work, transaction=True)


async def credentials_by_transport(dsn: str) -> dict[str | None, int]:
    """How many salons have stored credentials, by the transport that made them (None: unknown).

    Readable before migrations run, so ``dev`` can refuse a database before changing it: a schema
    older than origins counts every row as unknown; a database without the table answers ``{}``.
    """

    async def run() -> dict[str | None, int]:
        conn = await connect_aio(dsn)
        try:
            if not await conn.fetchval("SELECT to_regclass('whatsapp_credentials') IS NOT NULL"):
                return {}
            has_origin = await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = 'whatsapp_credentials' AND column_name = 'transport')"
            )
            transport = "transport" if has_origin else "NULL::text"
            rows = await conn.fetch(
                f"SELECT {transport} AS transport, count(*) AS n FROM whatsapp_credentials GROUP BY 1"
            )
            return {row["transport"]: int(row["n"]) for row in rows}
        finally:
            await conn.close()

    result: dict[str | None, int] = await trio_asyncio.aio_as_trio(run)()
    return result
