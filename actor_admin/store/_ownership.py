"""Cluster membership and salon ownership in PostgreSQL, the one authority for both (docs/cluster.md).

``cluster_nodes`` holds one row per node process, renewed by its heartbeat; ``salon_owners`` names the
node that owns each salon and the salon's current **fence**, a number from one sequence that changes
with every change of owner. Every operation here is a single compare-and-set statement (or a few, in
one asyncio crossing), so of any number of nodes racing for a salon exactly one wins, and what a node
was told it owns stays true until it is told otherwise — or until it stops renewing for a TTL.

Nothing here judges liveness or decides placement: that is ``actor_admin.cluster`` (pure, on trio's
clock). This module only refuses what would break one-owner-per-salon.

Lock order, everywhere: ``cluster_nodes`` rows first, then ``salon_owners`` rows in ``salon_id``
order — so concurrent claims, releases, takeovers and replacements queue up instead of deadlocking.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Final, Literal, TypeVar, final

import asyncpg
import attrs

from actor_admin.session import INACTIVE_STATES

from ._db import Conn, Database
from ._errors import StoreError
from ._models import from_row

T = TypeVar("T")

FENCED_SQLSTATE: Final = "AAF01"
"""Raised by PostgreSQL (``sql/002_cluster.sql``) for a write whose stated fence is not current."""

OwnershipCause = Literal["claimed", "taken_after_expiry", "handed_over", "released"]
"""Why a salon's owner last changed (``salon_owners.cause``, and the ownership-change metric)."""


class Fenced(StoreError):
    """A write was refused: ``fence`` is no longer ``salon_id``'s current fence.

    The salon was released, handed over or taken over since this node was given ``fence``. The
    caller must stop acting for the salon (stop its actor, never reconnect), not retry.
    """

    def __init__(self, salon_id: int, fence: int, detail: str | None = None) -> None:
        super().__init__(f"salon {salon_id} is fenced: fence {fence} is not its current one"
                         + (f" ({detail})" if detail else ""))
        self.salon_id = salon_id
        self.fence = fence


#: How PostgreSQL words a refusal (actor_admin_check_fence, ``sql/006_row_fence.sql``): the salon and the
#: fence its writer stated, which a statement writing for many salons needs to know which one was refused.
_REFUSAL = re.compile(r"salon (\d+) is fenced: fence (\d+) is not its current one")


def refusal(exc: asyncpg.PostgresError) -> Fenced | None:
    """The :class:`Fenced` refusal ``exc`` is, named by PostgreSQL's words; None for any other error."""
    if getattr(exc, "sqlstate", None) != FENCED_SQLSTATE:
        return None
    found = _REFUSAL.match(str(getattr(exc, "message", "")))
    if found is None:
        return None
    return Fenced(int(found[1]), int(found[2]), getattr(exc, "detail", None))


class NodeSuperseded(StoreError):
    """This node's row is gone or names another incarnation: a process with the same ``NODE_ID``
    replaced it (or it left). Everything it owned was re-fenced; it must stop every actor."""


class NodeIdOccupied(StoreError):
    """Joining was refused: another incarnation of this ``NODE_ID`` is registered and may be alive.

    ``occupant`` is its row as read now. Replace it (``join(..., replacing=occupant.ref)``) only
    after watching its ``heartbeat_seq`` stay unchanged for the TTL; if it keeps changing, two
    processes were started with one ``NODE_ID``.
    """

    def __init__(self, occupant: NodeRecord) -> None:
        super().__init__(
            f"node id {occupant.node_id!r} is registered by another process (incarnation "
            f"{occupant.incarnation}, heartbeat {occupant.heartbeat_seq}, {occupant.heartbeat_age_s:.1f} s ago)"
        )
        self.occupant = occupant


@final
@attrs.frozen
class Member:
    """This process as a cluster member: its ``NODE_ID`` plus an incarnation unique to this start."""

    node_id: str
    incarnation: str
    version: str

    @classmethod
    def new(cls, node_id: str, version: str) -> Member:
        """A fresh incarnation of ``node_id`` (call once per process start)."""
        if not 1 <= len(node_id) <= 200:
            raise ValueError("node_id must be 1 to 200 characters")
        return cls(node_id=node_id, incarnation=secrets.token_hex(8), version=version)


@final
@attrs.frozen
class NodeRef:
    """One node incarnation at one heartbeat: what a takeover or a forget is conditional on."""

    node_id: str
    incarnation: str
    heartbeat_seq: int


@final
@attrs.frozen
class NodeRecord:
    """A ``cluster_nodes`` row. ``heartbeat_at``/``heartbeat_age_s`` are PostgreSQL's clock: for
    operators only; liveness is judged from ``heartbeat_seq`` on the observer's own clock."""

    node_id: str
    incarnation: str
    version: str
    started_at: datetime
    heartbeat_seq: int
    heartbeat_at: datetime
    heartbeat_age_s: float
    draining: bool

    @property
    def ref(self) -> NodeRef:
        return NodeRef(self.node_id, self.incarnation, self.heartbeat_seq)


@final
@attrs.frozen
class Owner:
    """A ``salon_owners`` row: ``node_id`` None means released."""

    node_id: str | None
    fence: int


@final
@attrs.frozen
class Takeover:
    """Claim a salon from a dead owner: ``dead`` as observed unchanged for the TTL, ``fence`` its fence."""

    dead: NodeRef
    fence: int


@final
@attrs.frozen
class Claim:
    """Ask to own ``salon_id``: from released (or never owned) when ``takeover`` is None."""

    salon_id: int
    takeover: Takeover | None = None


@final
@attrs.frozen
class Heartbeat:
    """What a heartbeat learned: this node's new ``heartbeat_seq``, every node row (read after the
    beat), and — when asked for — every salon this node owns with its fence."""

    seq: int
    nodes: tuple[NodeRecord, ...]
    owned: Mapping[int, int] | None


@final
@attrs.frozen
class StoredSalon:
    """A salon as PostgreSQL knows it: its owner (None: released or never owned), the connection
    its actor last stored, and whether it should run (stored credentials, not frozen or uninstalled)."""

    salon_id: int
    node_id: str | None
    whatsapp_connected: bool
    whatsapp_phone: str | None
    since: datetime
    should_run: bool


_SALONS = """
SELECT c.salon_id, o.node_id, c.whatsapp_connected, c.whatsapp_phone,
       coalesce(o.changed_at, c.updated_at) AS since,
       (w.salon_id IS NOT NULL AND c.integration_status <> ALL($1::text[])) AS should_run
FROM companies c
LEFT JOIN salon_owners o USING (salon_id)
LEFT JOIN whatsapp_credentials w USING (salon_id)
WHERE o.node_id IS NOT NULL OR (w.salon_id IS NOT NULL AND c.integration_status <> ALL($1::text[]))
ORDER BY c.salon_id
"""

@final
@attrs.frozen
class ClusterHealth:
    """What ``/metrics`` shows of the cluster: node rows, the silent ones, salons without a live owner."""

    nodes: int
    silent_nodes: int
    salons_without_owner: int


_HEALTH = """
WITH n AS (SELECT node_id, heartbeat_at < now() - make_interval(secs => $2) AS silent FROM cluster_nodes)
SELECT (SELECT count(*) FROM n)::int AS nodes,
       (SELECT count(*) FROM n WHERE silent)::int AS silent,
       CASE WHEN NOT EXISTS (SELECT 1 FROM n) THEN 0 ELSE (
           SELECT count(*) FROM companies c
           JOIN whatsapp_credentials w USING (salon_id)
           LEFT JOIN salon_owners o USING (salon_id)
           LEFT JOIN n ON n.node_id = o.node_id
           WHERE c.integration_status <> ALL($1::text[])
             AND (n.node_id IS NULL OR n.silent)
             AND coalesce(o.changed_at, c.updated_at) < now() - make_interval(secs => $2)
       ) END::int AS unowned
"""


_NODES = """
SELECT node_id, incarnation, version, started_at, heartbeat_seq, heartbeat_at, draining,
       extract(epoch FROM now() - heartbeat_at)::float8 AS heartbeat_age_s
FROM cluster_nodes ORDER BY node_id
"""

# `me` is locked FOR SHARE: a replacement of this node's incarnation (an UPDATE of that row) waits
# for the claim to commit and then releases what it claimed, instead of leaving rows that the new
# incarnation would read as its own while the old one still holds their fences.
_ME = """
me AS (SELECT node_id FROM cluster_nodes
       WHERE node_id = $1 AND incarnation = $2 AND NOT draining FOR SHARE)
"""

_CLAIM_RELEASED = f"""
WITH {_ME},
candidates AS (
    SELECT c.salon_id FROM companies c
    WHERE c.salon_id = ANY($3::bigint[]) AND EXISTS (SELECT 1 FROM me)
    ORDER BY c.salon_id FOR KEY SHARE OF c   -- a company deleted meanwhile is skipped, not an FK error
)
INSERT INTO salon_owners AS o (salon_id, node_id, fence, cause)
SELECT salon_id, $1, nextval('salon_owner_fence'), 'claimed' FROM candidates ORDER BY salon_id
ON CONFLICT (salon_id) DO UPDATE
    SET node_id = EXCLUDED.node_id, fence = EXCLUDED.fence, changed_at = now(), cause = EXCLUDED.cause
    WHERE o.node_id IS NULL
RETURNING o.salon_id, o.fence
"""

# The dead node's row is locked FOR SHARE with the heartbeat_seq that was observed: its heartbeat
# (an UPDATE of that row) either committed first — then the seq differs and nothing is taken — or
# waits for this statement, and its next read of what it owns sees the takeover.
_TAKE_OVER = f"""
WITH {_ME},
dead AS (SELECT node_id FROM cluster_nodes
         WHERE node_id = $3 AND incarnation = $4 AND heartbeat_seq = $5 FOR SHARE),
targets AS (
    SELECT o.salon_id FROM salon_owners o
    JOIN unnest($6::bigint[], $7::bigint[]) AS t(salon_id, fence) ON t.salon_id = o.salon_id
    WHERE o.node_id = $3 AND o.fence = t.fence AND EXISTS (SELECT 1 FROM me) AND EXISTS (SELECT 1 FROM dead)
    ORDER BY o.salon_id FOR UPDATE OF o
)
UPDATE salon_owners o
SET node_id = $1, fence = nextval('salon_owner_fence'), changed_at = now(), cause = 'taken_after_expiry'
FROM targets WHERE o.salon_id = targets.salon_id
RETURNING o.salon_id, o.fence
"""

_RELEASE = """
WITH targets AS (
    SELECT o.salon_id FROM salon_owners o
    JOIN unnest($2::bigint[], $3::bigint[]) AS t(salon_id, fence) ON t.salon_id = o.salon_id
    WHERE o.node_id = $1 AND o.fence = t.fence
    ORDER BY o.salon_id FOR UPDATE OF o
)
UPDATE salon_owners o
SET node_id = NULL, fence = nextval('salon_owner_fence'), changed_at = now(), cause = $4
FROM targets WHERE o.salon_id = targets.salon_id
RETURNING o.salon_id
"""

# Everything a node id owns, released with new fences (leaving, or a replaced incarnation).
_RELEASE_ALL = """
WITH targets AS (
    SELECT salon_id FROM salon_owners WHERE node_id = $1 ORDER BY salon_id FOR UPDATE
)
UPDATE salon_owners o
SET node_id = NULL, fence = nextval('salon_owner_fence'), changed_at = now(), cause = 'released'
FROM targets WHERE o.salon_id = targets.salon_id
RETURNING o.salon_id
"""


async def _fetch_node(conn: Conn, node_id: str) -> NodeRecord | None:
    row = await conn.fetchrow(
        "SELECT * FROM (" + _NODES + ") n WHERE node_id = $1", node_id
    )
    return None if row is None else from_row(NodeRecord, row)


def _int_arrays(pairs: Iterable[tuple[int, int]]) -> tuple[list[int], list[int]]:
    ordered = sorted(pairs)
    return [a for a, _ in ordered], [b for _, b in ordered]




async def run_fenced(db: Database, salon_id: int, fence: int, work: Callable[[Conn], Awaitable[T]]) -> T:
    """Run ``work(conn)`` in one transaction that writes for ``salon_id``'s owner holding ``fence``.

    The transaction first states the fence and checks it (locking the owner row FOR SHARE, so the
    salon cannot change owner before this commits); then every write ``work`` makes to a fenced
    table is checked again by PostgreSQL's triggers, whatever salon it touches. This is how the
    repositories make an actor's writes (credentials, connection fields, events, messages, outbox).

    Raises:
        Fenced: ``fence`` is not ``salon_id``'s current fence (nothing was written).
        StoreUnavailable: PostgreSQL cannot be reached (the transaction did not commit or may have).
    """

    async def fenced(conn: Conn) -> T:
        await conn.execute("SELECT actor_admin_use_fence($1, $2)", salon_id, fence)
        return await work(conn)

    try:
        return await db.run(fenced, transaction=True)
    except asyncpg.PostgresError as exc:
        if getattr(exc, "sqlstate", None) == FENCED_SQLSTATE:
            raise Fenced(salon_id, fence, getattr(exc, "detail", None)) from exc
        raise


@final
class Ownership:
    """``cluster_nodes`` and ``salon_owners``: membership, claims, releases, takeovers, fencing.

    Every method is one asyncio crossing. Methods that change ownership are compare-and-set: they
    change nothing unless the rows still are as the caller saw them, and answer with what changed.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- membership -------------------------------------------------------------------------------

    async def join(self, me: Member, *, replacing: NodeRef | None = None) -> NodeRecord:
        """Register ``me``; with ``replacing``, take over that earlier incarnation's row.

        A replaced incarnation's salons are all released with new fences (cause ``released``), so it
        cannot write for any of them even if it is still running; it learns so at its next heartbeat
        (:class:`NodeSuperseded`).

        Raises:
            NodeIdOccupied: another incarnation holds the node id and is not ``replacing`` (or has
                beaten since it was observed).
        """

        async def work(conn: Conn) -> NodeRecord:
            inserted = await conn.fetchval(
                """
                INSERT INTO cluster_nodes (node_id, incarnation, version) VALUES ($1, $2, $3)
                ON CONFLICT (node_id) DO NOTHING RETURNING node_id
                """,
                me.node_id, me.incarnation, me.version,
            )
            if (
                inserted is None
                and replacing is not None
                and replacing.node_id == me.node_id
                and replacing.incarnation != me.incarnation
            ):
                inserted = await conn.fetchval(
                    """
                    UPDATE cluster_nodes SET incarnation = $4, version = $5, started_at = now(),
                        heartbeat_seq = heartbeat_seq + 1, heartbeat_at = now(), draining = false
                    WHERE node_id = $1 AND incarnation = $2 AND heartbeat_seq = $3 RETURNING node_id
                    """,
                    replacing.node_id, replacing.incarnation, replacing.heartbeat_seq,
                    me.incarnation, me.version,
                )
                if inserted is not None:
                    await conn.fetch(_RELEASE_ALL, me.node_id)
            record = await _fetch_node(conn, me.node_id)
            assert record is not None  # the row exists: inserted, updated, or the occupant's
            if record.incarnation != me.incarnation:
                raise NodeIdOccupied(record)
            return record

        return await self._db.run(work, transaction=True)

    async def heartbeat(self, me: Member, *, include_owned: bool = False) -> Heartbeat:
        """Renew ``me`` (``heartbeat_seq`` + 1) and read every node row — O(nodes), whatever it owns.

        The reads run after the renewal committed, each with a fresh snapshot: a takeover of this
        node's salons either committed before the renewal (and ``owned`` shows it) or will fail
        because the renewal changed the ``heartbeat_seq`` it is conditional on. With
        ``include_owned`` (after a gap in renewals: see ``NodeLease``) the answer lists every salon
        this node owns.

        Raises:
            NodeSuperseded: this incarnation's row is gone or replaced.
        """

        async def work(conn: Conn) -> Heartbeat:
            seq = await conn.fetchval(
                """
                UPDATE cluster_nodes SET heartbeat_seq = heartbeat_seq + 1, heartbeat_at = now()
                WHERE node_id = $1 AND incarnation = $2 RETURNING heartbeat_seq
                """,
                me.node_id, me.incarnation,
            )
            if seq is None:
                raise NodeSuperseded(f"node {me.node_id!r} incarnation {me.incarnation} is no longer registered")
            nodes = tuple(from_row(NodeRecord, r) for r in await conn.fetch(_NODES))
            owned = await _owned(conn, me.node_id) if include_owned else None
            return Heartbeat(seq=int(seq), nodes=nodes, owned=owned)

        return await self._db.run(work)

    async def set_draining(self, me: Member, draining: bool = True) -> None:
        """Mark ``me`` as draining (shutting down: claims nothing, placement skips it) or not.

        Raises:
            NodeSuperseded: this incarnation's row is gone or replaced.
        """

        async def work(conn: Conn) -> None:
            status = await conn.execute(
                "UPDATE cluster_nodes SET draining = $3 WHERE node_id = $1 AND incarnation = $2",
                me.node_id, me.incarnation, draining,
            )
            if status == "UPDATE 0":
                raise NodeSuperseded(f"node {me.node_id!r} incarnation {me.incarnation} is no longer registered")

        await self._db.run(work)

    async def leave(self, me: Member) -> list[int]:
        """Release everything ``me`` still owns and delete its row (graceful shutdown, last step).

        Returns the salons released. Leaving twice, or after being replaced, changes nothing.
        """

        async def work(conn: Conn) -> list[int]:
            mine = await conn.fetchval(
                "SELECT node_id FROM cluster_nodes WHERE node_id = $1 AND incarnation = $2 FOR UPDATE",
                me.node_id, me.incarnation,
            )
            if mine is None:
                return []
            released = sorted(r["salon_id"] for r in await conn.fetch(_RELEASE_ALL, me.node_id))
            await conn.execute("DELETE FROM cluster_nodes WHERE node_id = $1", me.node_id)
            return released

        return await self._db.run(work, transaction=True)

    async def forget(self, dead: NodeRef) -> bool:
        """Delete a dead node's row, if it is still at the observed heartbeat and owns nothing."""

        async def work(conn: Conn) -> bool:
            try:
                status = await conn.execute(
                    """
                    DELETE FROM cluster_nodes n
                    WHERE node_id = $1 AND incarnation = $2 AND heartbeat_seq = $3
                      AND NOT EXISTS (SELECT 1 FROM salon_owners o WHERE o.node_id = n.node_id)
                    """,
                    dead.node_id, dead.incarnation, dead.heartbeat_seq,
                )
            except asyncpg.ForeignKeyViolationError:  # it was given a salon after our snapshot
                return False
            return bool(status == "DELETE 1")

        return await self._db.run(work)

    async def nodes(self) -> list[NodeRecord]:
        """Every node row, ordered by ``node_id``."""

        async def work(conn: Conn) -> list[NodeRecord]:
            return [from_row(NodeRecord, r) for r in await conn.fetch(_NODES)]

        return await self._db.run(work, retry=True)

    # --- ownership --------------------------------------------------------------------------------

    async def claim(self, me: Member, claims: Iterable[Claim]) -> dict[int, int]:
        """Try to own each claimed salon; returns ``{salon_id: new fence}`` for those won.

        A claim without ``takeover`` wins only if the salon is released or was never owned (and the
        company exists); one with ``takeover`` only if the salon still names the dead node with that
        fence *and* the dead node's row is still at the observed ``heartbeat_seq``. Nothing is won
        while ``me`` is draining or no longer registered. Of any number of racing claimers exactly
        one wins each salon.
        """
        released: set[int] = set()
        takeovers: dict[NodeRef, dict[int, int]] = {}
        for claim in claims:
            if claim.takeover is None:
                released.add(claim.salon_id)
            else:
                takeovers.setdefault(claim.takeover.dead, {})[claim.salon_id] = claim.takeover.fence

        async def work(conn: Conn) -> dict[int, int]:
            won: dict[int, int] = {}
            if released:
                rows = await conn.fetch(_CLAIM_RELEASED, me.node_id, me.incarnation, sorted(released))
                won.update((r["salon_id"], r["fence"]) for r in rows)
            for dead, fences in sorted(takeovers.items(), key=lambda item: item[0].node_id):
                salon_ids, old_fences = _int_arrays(fences.items())
                rows = await conn.fetch(
                    _TAKE_OVER, me.node_id, me.incarnation, dead.node_id, dead.incarnation,
                    dead.heartbeat_seq, salon_ids, old_fences,
                )
                won.update((r["salon_id"], r["fence"]) for r in rows)
            return won

        if not released and not takeovers:
            return {}
        return await self._db.run(work)

    async def release(
        self, me: Member, fences: Mapping[int, int], *, cause: Literal["handed_over", "released"] = "handed_over"
    ) -> set[int]:
        """Give up salons this node owns, each only if it still holds the given fence.

        The caller has already stopped their actors: from here on the old fences write nothing.
        Returns the salons released.
        """
        if not fences:
            return set()
        salon_ids, old_fences = _int_arrays(fences.items())

        async def work(conn: Conn) -> set[int]:
            rows = await conn.fetch(_RELEASE, me.node_id, salon_ids, old_fences, cause)
            return {r["salon_id"] for r in rows}

        return await self._db.run(work)

    async def owners(self) -> dict[int, Owner]:
        """Every ``salon_owners`` row (the planner's view of the cluster; O(salons), not per beat)."""

        async def work(conn: Conn) -> dict[int, Owner]:
            rows = await conn.fetch("SELECT salon_id, node_id, fence FROM salon_owners")
            return {r["salon_id"]: Owner(r["node_id"], r["fence"]) for r in rows}

        return await self._db.run(work, retry=True)

    async def owners_of(self, salon_ids: Iterable[int]) -> dict[int, str]:
        """``{salon_id: node_id}`` of those of ``salon_ids`` that a node owns now (one query)."""
        ids = list(salon_ids)

        async def work(conn: Conn) -> dict[int, str]:
            rows = await conn.fetch(
                "SELECT salon_id, node_id FROM salon_owners WHERE salon_id = ANY($1::bigint[]) AND node_id IS NOT NULL",
                ids,
            )
            return {r["salon_id"]: r["node_id"] for r in rows}

        return await self._db.run(work, retry=True) if ids else {}

    async def connected_salons(self) -> dict[int, str | None]:
        """``{salon_id: owner node or None}`` of every salon whose stored connection is up
        (``companies.whatsapp_connected``, which its owner's actor keeps current): one query."""

        async def work(conn: Conn) -> dict[int, str | None]:
            rows = await conn.fetch(
                "SELECT c.salon_id, o.node_id FROM companies c LEFT JOIN salon_owners o USING (salon_id) "
                "WHERE c.whatsapp_connected"
            )
            return {r["salon_id"]: r["node_id"] for r in rows}

        return await self._db.run(work, retry=True)

    async def owned(self, node_id: str) -> dict[int, int]:
        """``{salon_id: fence}`` of every salon ``node_id`` owns."""

        async def work(conn: Conn) -> dict[int, int]:
            return await _owned(conn, node_id)

        return await self._db.run(work, retry=True)

    async def owned_counts(self) -> dict[str, int]:
        """How many salons each node owns (for ``/status``); nodes owning none are absent."""

        async def work(conn: Conn) -> dict[str, int]:
            rows = await conn.fetch(
                "SELECT node_id, count(*) AS owned FROM salon_owners WHERE node_id IS NOT NULL GROUP BY node_id"
            )
            return {r["node_id"]: int(r["owned"]) for r in rows}

        return await self._db.run(work, retry=True)

    async def salons(self) -> list[StoredSalon]:
        """Every salon that has an owner or should run, with its stored connection (one query).

        What ``/status`` shows for salons whose actor runs elsewhere, and what ``doctor`` checks for
        salons without a live owner; ordered by ``salon_id``.
        """

        async def work(conn: Conn) -> list[StoredSalon]:
            return [from_row(StoredSalon, r) for r in await conn.fetch(_SALONS, sorted(INACTIVE_STATES))]

        return await self._db.run(work, retry=True)

    async def health(self, silent_after_s: float) -> ClusterHealth:
        """Nodes silent for longer than ``silent_after_s`` and salons that should run without a live
        owner (released or owned by a silent node longer than that), on PostgreSQL's clock — the
        operators' gauges (one query, counts only). Both 0 while no node is registered."""

        async def work(conn: Conn) -> ClusterHealth:
            row = await conn.fetchrow(_HEALTH, sorted(INACTIVE_STATES), silent_after_s)
            return ClusterHealth(row["nodes"], row["silent"], row["unowned"])

        return await self._db.run(work, retry=True)

    # --- fencing ----------------------------------------------------------------------------------

    async def fence_is_current(self, salon_id: int, fence: int) -> bool:
        """Whether a write stating ``fence`` for ``salon_id`` would pass the fence check now."""

        async def work(conn: Conn) -> bool:
            current = await conn.fetchval(
                "SELECT fence FROM salon_owners WHERE salon_id = $1 AND node_id IS NOT NULL", salon_id
            )
            return bool(current == fence)

        return await self._db.run(work, retry=True)

    async def run_fenced(self, salon_id: int, fence: int, work: Callable[[Conn], Awaitable[T]]) -> T:
        """:func:`run_fenced` on this store's pool."""
        return await run_fenced(self._db, salon_id, fence, work)


async def _owned(conn: Conn, node_id: str) -> dict[int, int]:
    rows = await conn.fetch("SELECT salon_id, fence FROM salon_owners WHERE node_id = $1", node_id)
    return {r["salon_id"]: r["fence"] for r in rows}
