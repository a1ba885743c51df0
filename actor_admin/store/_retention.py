"""Retention (docs/data.md#retention): old messages, events and finished outbox rows are deleted.

:class:`Retention` is the SQL: one batch — at most ``batch_rows`` of the oldest rows past the cutoff,
one short transaction — per call, and the table sizes for ``/status``. :class:`Pruner` is the job each
node runs: every ``interval_s`` it deletes batch after batch, pausing between them on trio's clock,
until a table has nothing older than its cutoff.

Never a long lock. A batch locks only the rows it deletes (old rows nobody writes), skips any a
writer holds (``SKIP LOCKED``) instead of waiting for it, and gives up on a table lock after
``LOCK_TIMEOUT`` instead of queueing behind, say, a migration (a waiter in the lock queue would
block every writer behind it). Between batches it holds nothing. One node prunes at a time: each
batch takes a transaction-level advisory lock with ``pg_try_advisory_xact_lock``, and a node that
finds it taken ends its run (another node is pruning; its turn comes at its next interval).
"""

from __future__ import annotations

import logging
from typing import Final, Literal, Protocol, final

import attrs
import trio

from ._db import Conn, Database

log = logging.getLogger("actor_admin.store")

#: pg_try_advisory_xact_lock key of the pruning job ("aaprune" as an integer).
RETENTION_LOCK_KEY: Final = 0x61_6170_7275_6E65

Table = Literal["messages", "company_events", "outbox"]
#: The tables retention prunes, in the order a run visits them.
PRUNED_TABLES: Final[tuple[Table, ...]] = ("messages", "company_events", "outbox")
#: How a run can end: ``done``; ``yielded`` (another node was pruning); ``failed`` (PostgreSQL failed).
RUN_OUTCOMES: Final = ("done", "yielded", "failed")
#: The tables whose size ``/status`` shows.
SIZED_TABLES: Final = ("companies", "whatsapp_credentials", "company_events", "outbox", "messages")

# A batch that waits this long for a lock gives up (and the run ends; the next one tries again).
LOCK_TIMEOUT: Final = "1s"
# The bound on one batch's statement: an index range scan of ≤ batch_rows rows takes milliseconds.
STATEMENT_TIMEOUT: Final = "30s"

# Each statement deletes the oldest rows past the cutoff ($1 days), at most $2 of them. company_events'
# trigger lets a delete through only below the horizon the transaction stated first (the same cutoff:
# now() is the transaction's start time in both statements; sql/004_retention.sql).
_PRUNE: Final[dict[Table, str]] = {
    "messages": """
        WITH doomed AS (
            SELECT id FROM messages WHERE at < now() - make_interval(days => $1)
            ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED)
        DELETE FROM messages m USING doomed WHERE m.id = doomed.id""",
    "company_events": """
        WITH doomed AS (
            SELECT id FROM company_events WHERE at < now() - make_interval(days => $1)
            ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED)
        DELETE FROM company_events e USING doomed WHERE e.id = doomed.id""",
    "outbox": """
        WITH doomed AS (
            SELECT id FROM outbox
            WHERE (delivered_at IS NOT NULL OR failed_at IS NOT NULL)
              AND COALESCE(delivered_at, failed_at) < now() - make_interval(days => $1)
            ORDER BY COALESCE(delivered_at, failed_at) LIMIT $2 FOR UPDATE SKIP LOCKED)
        DELETE FROM outbox o USING doomed WHERE o.id = doomed.id""",
}


@final
@attrs.frozen
class RetentionPolicy:
    """How long rows are kept (days; 0 keeps them forever) and how the job paces itself.

    Attributes:
        messages_days: ``MESSAGES_RETENTION_DAYS`` — messages by ``at`` (their text is personal data).
        events_days: ``EVENTS_RETENTION_DAYS`` — ``company_events`` by ``at``.
        outbox_days: ``OUTBOX_RETENTION_DAYS`` — delivered or finally failed outbox rows, by when they
            finished; a pending row is never pruned.
        batch_rows: rows per delete statement (one short transaction each).
        pause_s: the pause between two batches, so pruning a backlog never hogs the database.
        interval_s: time between two runs.
        first_run_after_s: the first run's delay after start (start-up restores salons first).
    """

    messages_days: int = 90
    events_days: int = 365
    outbox_days: int = 30
    batch_rows: int = 1000
    pause_s: float = 0.1
    interval_s: float = 3600.0
    first_run_after_s: float = 60.0

    def days(self, table: Table) -> int:
        return {"messages": self.messages_days, "company_events": self.events_days, "outbox": self.outbox_days}[table]


@final
@attrs.frozen
class TableSize:
    """One table as ``/status`` shows it: PostgreSQL's row estimate (None: never analysed) and bytes
    on disk, indexes and TOAST included."""

    table: str
    rows_estimate: int | None
    bytes: int


@final
class Retention:
    """The SQL of retention (one batch per call) and the sizes of the tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def prune_batch(self, table: Table, *, days: int, limit: int) -> int | None:
        """Delete at most ``limit`` of ``table``'s oldest rows older than ``days`` days, in one short
        transaction; the number deleted, or None when another node holds the pruning lock."""
        if days < 1 or limit < 1:
            raise ValueError("days and limit must be ≥ 1")

        async def work(conn: Conn) -> int | None:
            await conn.execute(
                f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'; SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'"
            )
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RETENTION_LOCK_KEY):
                return None
            if table == "company_events":
                await conn.execute(
                    "SELECT set_config('actor_admin.prune_before', (now() - make_interval(days => $1))::text, true)",
                    days,
                )
            status: str = await conn.execute(_PRUNE[table], days, limit)
            return int(status.rsplit(" ", 1)[-1])  # "DELETE n"

        return await self._db.run(work, transaction=True)

    async def table_sizes(self) -> list[TableSize]:
        """Every table of :data:`SIZED_TABLES` with its row estimate and total size (catalog reads only)."""

        async def work(conn: Conn) -> list[TableSize]:
            rows = await conn.fetch(
                """
                SELECT t.name, c.reltuples::bigint AS rows_estimate, pg_total_relation_size(c.oid) AS bytes
                FROM unnest($1::text[]) WITH ORDINALITY AS t(name, n)
                JOIN pg_class c ON c.oid = to_regclass(t.name)
                ORDER BY t.n
                """,
                list(SIZED_TABLES),
            )
            # reltuples is -1 until the table was first vacuumed or analysed.
            return [
                TableSize(r["name"], r["rows_estimate"] if r["rows_estimate"] >= 0 else None, r["bytes"]) for r in rows
            ]

        return await self._db.run(work, retry=True)


@final
@attrs.define
class PruneRun:
    """What one run did: rows deleted per table, batches, and how it ended."""

    started_at: float
    pruned: dict[str, int] = attrs.field(factory=lambda: dict.fromkeys(PRUNED_TABLES, 0))
    batches: int = 0
    duration_s: float = 0.0
    #: ``done``; ``yielded`` (another node was pruning); ``failed`` (PostgreSQL failed; see ``error``).
    outcome: Literal["done", "yielded", "failed"] = "done"
    error: str | None = None


class Batches(Protocol):
    """What the job needs of :class:`Retention` (tests drive the schedule with a double)."""

    async def prune_batch(self, table: Table, *, days: int, limit: int) -> int | None: ...


@final
class Pruner:
    """The retention job of one node: ``nursery.start_soon(pruner.run)``; ``await pruner.prune_once()``
    runs one pass now (tests, and an operator's tooling)."""

    def __init__(self, retention: Batches, policy: RetentionPolicy) -> None:
        self._retention = retention
        self.policy = policy
        #: Rows deleted by this node since it started, per table (for ``/metrics``).
        self.pruned_total: dict[str, int] = dict.fromkeys(PRUNED_TABLES, 0)
        #: Runs by outcome since start.
        self.runs_total: dict[str, int] = dict.fromkeys(RUN_OUTCOMES, 0)
        self.last_run: PruneRun | None = None

    async def run(self) -> None:
        """Prune every ``interval_s``, the first time ``first_run_after_s`` after start; forever."""
        await trio.sleep(self.policy.first_run_after_s)
        while True:
            await self.prune_once()
            await trio.sleep(self.policy.interval_s)

    async def prune_once(self) -> PruneRun:
        """One run over every table with a retention; logs one line with its counts."""
        run = PruneRun(started_at=trio.current_time())
        try:
            for table in PRUNED_TABLES:
                if not await self._prune_table(table, run):
                    run.outcome = "yielded"
                    break
        except Exception as exc:  # PostgreSQL down or a timeout: the next run tries again
            run.outcome, run.error = "failed", f"{type(exc).__name__}: {exc}"
        run.duration_s = trio.current_time() - run.started_at
        self.last_run = run
        self.runs_total[run.outcome] += 1
        counts = ", ".join(f"{table} {n}" for table, n in run.pruned.items())
        line = "retention %s: pruned %s in %d batch(es), %.1f s"
        if run.outcome == "failed":
            log.warning(line + " — %s", run.outcome, counts, run.batches, run.duration_s, run.error)
        else:
            log.info(line, run.outcome, counts, run.batches, run.duration_s)
        return run

    async def _prune_table(self, table: Table, run: PruneRun) -> bool:
        """Batches until ``table`` has nothing past its cutoff; False when another node holds the lock."""
        days, limit = self.policy.days(table), self.policy.batch_rows
        if days == 0:
            return True  # kept forever
        while True:
            deleted = await self._retention.prune_batch(table, days=days, limit=limit)
            if deleted is None:
                return False
            run.batches += 1
            run.pruned[table] += deleted
            self.pruned_total[table] += deleted
            if deleted < limit:
                return True
            await trio.sleep(self.policy.pause_s)
