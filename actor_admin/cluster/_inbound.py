"""The ``actor-admin:inbound`` Redis stream: where new inbound WhatsApp messages are announced.

PostgreSQL is the record (one row per company and WhatsApp message id); the stream is the
notification the AI product consumes. It is capped with approximate trimming (``MAXLEN ~``) so a
stalled consumer can never fill Redis' memory: Redis then trims whole internal nodes, which is far
cheaper than an exact cap and keeps at least ``maxlen`` entries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Final, final

from actor_admin.runtime import GroupCommit, GroupCommitOptions, GroupCommitStatistics, open_group_commit

from ._client import RedisClient
from ._errors import RedisUnavailable

DEFAULT_INBOUND_MAXLEN: Final = 100_000

# A batch of messages appended by one command (one reply to read, not one per message: with redis-py
# the replies of a pipeline cost more than the XADDs themselves). ARGV: the cap, then per message its
# number of field/value pairs and the pairs. Answers the stream ids in order; atomic, so a batch's
# messages stand together on the stream in the order given.
_XADD_MANY = """
local ids, i = {}, 2
while i <= #ARGV do
    local pairs = tonumber(ARGV[i])
    ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, i + 1, i + 2 * pairs))
    i = i + 1 + 2 * pairs
end
return ids
"""

FieldValue = str | int | float | bytes


@final
class InboundStream:
    """Appends inbound messages to the stream ``{prefix}inbound`` (``actor-admin:inbound``)."""

    def __init__(self, client: RedisClient, *, maxlen: int = DEFAULT_INBOUND_MAXLEN) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be ≥ 1")
        self._client = client
        self.maxlen = maxlen
        self.name = client.key("inbound")
        self._xadd_script = client.script(_XADD_MANY)
        #: While :meth:`grouped` is open: the XADDs of many actors, one command a batch.
        self._group: GroupCommit[list[FieldValue], str] | None = None

    @asynccontextmanager
    async def grouped(self, options: GroupCommitOptions | None = None) -> AsyncIterator[None]:
        """While open, :meth:`publish_inbound` calls of many tasks go out together: one command (one
        round trip) a batch (docs/data.md#group-commit)."""
        group = GroupCommit(
            self._xadd_many, options or GroupCommitOptions(),
            closed=lambda: RedisUnavailable("the inbound stream's group commit has stopped"),
        )
        async with open_group_commit(group):
            self._group = group
            try:
                yield
            finally:
                self._group = None

    def group_statistics(self) -> GroupCommitStatistics | None:
        return None if self._group is None else self._group.statistics

    async def publish_inbound(self, salon_id: int, fields: Mapping[str, FieldValue]) -> str:
        """XADD one message; returns its stream id (``"1700000000000-0"``).

        ``salon_id`` is always written as a field of its own so consumers can route without
        parsing the rest. Within :meth:`grouped`, sent in one command with other salons' messages,
        in the order they were published. Raises :class:`RedisUnavailable` — the caller keeps the
        message in PostgreSQL and announces it again later.
        """
        if "salon_id" in fields:
            raise ValueError("salon_id is given as its own argument, not among the fields")
        args: list[FieldValue] = ["salon_id", salon_id]
        for name, value in fields.items():
            args += [name, value]
        group = self._group
        if group is not None and group.running:
            return await group.submit(args)
        stream_id = await self._client.execute(*self._xadd(args))
        return str(stream_id)

    def _xadd(self, args: list[FieldValue]) -> list[FieldValue]:
        return ["XADD", self.name, "MAXLEN", "~", self.maxlen, "*", *args]

    async def _xadd_many(self, batch: Sequence[list[FieldValue]]) -> list[str | Exception]:
        args: list[FieldValue] = [self.maxlen]
        for fields in batch:
            args.append(len(fields) // 2)
            args += fields
        replies = await self._xadd_script([self.name], args)
        return [str(stream_id) for stream_id in replies]

    async def length(self) -> int:
        """XLEN of the stream (for ``/status`` and tests)."""
        return int(await self._client.execute("XLEN", self.name))
