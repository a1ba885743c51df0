"""The ``actor-admin:inbound`` Redis stream: where new inbound WhatsApp messages are announced.

PostgreSQL is the record (one row per company and WhatsApp message id); the stream is the
notification the AI product consumes. It is capped with approximate trimming (``MAXLEN ~``) so a
stalled consumer can never fill Redis' memory: Redis then trims whole internal nodes, which is far
cheaper than an exact cap and keeps at least ``maxlen`` entries.

On a node the actors announce through an :class:`InboundAnnouncer`: many salons' messages go out in
one command, and each announcement is recorded in PostgreSQL (``published_at``) after it is on the
stream (docs/data.md#inbound-stream). A salon whose messages did not make it (Redis down, a crash) is
*held*: its messages are left to the :class:`~actor_admin.cluster.Reannouncer`, which announces them
in the order they were stored (docs/data.md#reannouncing).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Final, Protocol, final

import attrs

from actor_admin.runtime import GroupCommit, GroupCommitOptions, open_group_commit

from ._client import RedisClient
from ._errors import RedisUnavailable

log = logging.getLogger("actor_admin.cluster")

DEFAULT_INBOUND_MAXLEN: Final = 100_000

# A batch of messages appended by one command, one argument: redis-py encodes every argument in
# Python, and a JSON array of the batch costs far less than its fields one by one (nor is there a
# reply per message to read, as a pipeline has). ARGV[1]: the cap; ARGV[2]: [[field, value, …], …].
# Answers the stream ids in order, or (ARGV[3] = "count") only how many were added: the announcer
# needs no ids, and reading 500 of them is redis-py parsing 500 replies in Python. Atomic, so a
# batch's messages stand together on the stream.
_XADD_MANY = """
local ids = {}
for i, entry in ipairs(cjson.decode(ARGV[2])) do
    ids[i] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(entry))
end
if ARGV[3] == 'count' then
    return #ids
end
return ids
"""

FieldValue = str | int | float | bytes


def inbound_fields(wa_id: str, peer: str, text: str, peer_lid: str | None = None) -> dict[str, str]:
    """A stored inbound message's fields on the stream (besides ``salon_id``): the one shape both the
    actors' announcements and the re-announcements write (docs/data.md#inbound-stream)."""
    fields = {"wa_id": wa_id, "peer": peer, "text": text}
    if peer_lid is not None:
        fields["peer_lid"] = peer_lid
    return fields


@final
class InboundStream:
    """Appends inbound messages to the stream ``{prefix}inbound`` (``actor-admin:inbound``)."""

    def __init__(self, client: RedisClient, *, maxlen: int = DEFAULT_INBOUND_MAXLEN) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be ≥ 1")
        self._client = client
        self.maxlen = maxlen
        self.name = client.key("inbound")
        self._xadd_many = client.script(_XADD_MANY)

    async def publish_inbound(self, salon_id: int, fields: Mapping[str, FieldValue]) -> str:
        """XADD one message; returns its stream id (``"1700000000000-0"``).

        ``salon_id`` is always written as a field of its own so consumers can route without
        parsing the rest. Raises :class:`RedisUnavailable` — the caller keeps the message in
        PostgreSQL and announces it again later.
        """
        (stream_id,) = await self.publish_many([(salon_id, fields)])
        return stream_id

    async def publish_many(self, messages: Sequence[tuple[int, Mapping[str, FieldValue]]]) -> list[str]:
        """XADD each ``(salon_id, fields)`` in one command, in order; their stream ids.

        All or none: the script runs atomically, so the messages stand together on the stream. Values
        go as text (bytes as UTF-8) when there are several.
        """
        entries = [_entry(salon_id, fields) for salon_id, fields in messages]
        if len(entries) <= 1:
            xadd = ("XADD", self.name, "MAXLEN", "~", self.maxlen, "*")
            replies = [await self._client.execute(*xadd, *entry) for entry in entries]
        else:
            replies = await self._xadd_many([self.name], [self.maxlen, _json(entries), "ids"])
        return [str(stream_id) for stream_id in replies]

    async def append_many(self, messages: Sequence[tuple[int, Mapping[str, FieldValue]]]) -> None:
        """:meth:`publish_many` without reading the stream ids back (the announcer's batch)."""
        if messages:
            await self._xadd_many([self.name], [self.maxlen, _json([_entry(s, f) for s, f in messages]), "count"])

    async def length(self) -> int:
        """XLEN of the stream (for ``/status`` and tests)."""
        return int(await self._client.execute("XLEN", self.name))


def _entry(salon_id: int, fields: Mapping[str, FieldValue]) -> list[FieldValue]:
    if "salon_id" in fields:
        raise ValueError("salon_id is given as its own argument, not among the fields")
    entry: list[FieldValue] = ["salon_id", salon_id]
    for name, value in fields.items():
        entry += [name, value]
    return entry


def _json(entries: Sequence[Sequence[FieldValue]]) -> str:
    return json.dumps([[_text(value) for value in entry] for entry in entries], ensure_ascii=False)


def _text(value: FieldValue) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value if isinstance(value, str) else str(value)


class PublishedLog(Protocol):
    """Where an announcement is recorded (the store's messages: ``published_at``)."""

    async def note_published_many(self, marks: Sequence[tuple[int, Sequence[str], int]]) -> object:
        """Record each ``(salon_id, wa_ids, fence)`` as announced (queued for writing, or written)."""
        ...


@final
@attrs.frozen
class _Announcement:
    salon_id: int
    fields: Mapping[str, FieldValue]
    fence: int


@final
class InboundAnnouncer:
    """The actors' inbound sink on a node: announces stored messages on the stream, many salons' in
    one command, then records each announcement with its writer's fence (docs/data.md#inbound-stream).

    While :meth:`running`, :meth:`publish_inbound` only queues the message (it waits only when
    ``options.capacity`` are queued): a salon's actor acknowledges its message and takes the next one
    while the announcement goes out. Batches go out one at a time in the order they were queued, so
    each salon's messages reach the stream in the order they were stored. A batch Redis refuses is
    logged and its messages stay unpublished in PostgreSQL. Outside :meth:`running` each message is
    announced and recorded before ``publish_inbound`` returns, and its errors are the caller's.

    A refused batch's salons are *held* (:attr:`held`): their later messages are not announced here
    but left stored for the re-announcer, which announces a salon's backlog oldest first and then
    releases the salon (:meth:`release`, docs/data.md#reannouncing): no message overtakes an older
    one of its salon.
    """

    def __init__(
        self, stream: InboundStream, published: PublishedLog, options: GroupCommitOptions | None = None
    ) -> None:
        self.stream = stream
        self._published = published
        self._group = GroupCommit(
            self._announce,
            attrs.evolve(options or GroupCommitOptions(), in_flight=1),  # one at a time: the stream's order
            closed=lambda: RedisUnavailable("the inbound announcer has stopped"),
            dropped=self._dropped,
        )
        #: Held salons → the :attr:`tick` of the latest message (or hold) left to the re-announcer.
        self.held: dict[int, int] = {}
        #: Counts holds and held-back messages; :meth:`release` compares a salon's with a read of it.
        self.tick = 0
        #: Called when a message is held back, and when Redis took a batch (the re-announcer's wake-ups).
        self.on_held: Callable[[], None] = _nothing
        self.on_answered: Callable[[], None] = _nothing

    @property
    def statistics(self) -> object:
        return self._group.statistics

    @asynccontextmanager
    async def running(self) -> AsyncIterator[InboundAnnouncer]:
        async with open_group_commit(self._group):
            yield self

    def hold(self, salons: Iterable[int]) -> None:
        """Leave ``salons``' messages to the re-announcer until it releases them (:meth:`release`)."""
        for salon_id in salons:
            self.tick += 1
            self.held[salon_id] = self.tick

    def release(self, salons: Iterable[int], since: int) -> None:
        """Announce ``salons``' messages here again, each unless one was held back after ``since`` (the
        :attr:`tick` read before the re-announcer's last read of their stored backlog)."""
        for salon_id in salons:
            if self.held.get(salon_id, since + 1) <= since:
                del self.held[salon_id]

    async def publish_inbound(self, salon_id: int, fields: Mapping[str, FieldValue], *, fence: int = 0) -> None:
        """Announce a stored message (its ``fields`` name ``wa_id``) and record that it was; for a
        held salon, leave it stored for the re-announcer instead."""
        if salon_id in self.held:
            self.hold((salon_id,))
            self.on_held()
            return
        announcement = _Announcement(salon_id, fields, fence)
        if self._group.running:
            await self._group.enqueue(announcement)
            return
        await self._announce([announcement])

    async def _announce(self, batch: Sequence[_Announcement]) -> list[Exception | None]:
        if self.held:  # a salon held since its message was queued: the re-announcer has it now
            kept = [a for a in batch if a.salon_id not in self.held]
            if len(kept) < len(batch):
                self.hold({a.salon_id for a in batch if a.salon_id in self.held})
                self.on_held()
        else:
            kept = list(batch)
        if not kept:
            return [None] * len(batch)
        await self.stream.append_many([(a.salon_id, a.fields) for a in kept])
        marks: dict[tuple[int, int], list[str]] = {}
        for a in kept:
            wa_id = a.fields.get("wa_id")
            if isinstance(wa_id, str):
                marks.setdefault((a.salon_id, a.fence), []).append(wa_id)
        await self._published.note_published_many([(salon, wa_ids, fence) for (salon, fence), wa_ids in marks.items()])
        self.on_answered()
        return [None] * len(batch)

    def _dropped(self, batch: Sequence[_Announcement], error: Exception) -> None:
        self.hold({a.salon_id for a in batch})
        log.warning(
            "inbound stream unavailable: %d stored messages not announced (left to the re-announcer): %s",
            len(batch), error,
        )
        self.on_held()


def _nothing() -> None:
    return None
