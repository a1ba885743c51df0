"""The ``actor-admin:inbound`` Redis stream: where new inbound WhatsApp messages are announced.

PostgreSQL is the record (one row per company and WhatsApp message id); the stream is the
notification the AI product consumes. It is capped with approximate trimming (``MAXLEN ~``) so a
stalled consumer can never fill Redis' memory: Redis then trims whole internal nodes, which is far
cheaper than an exact cap and keeps at least ``maxlen`` entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, final

from ._client import RedisClient

DEFAULT_INBOUND_MAXLEN: Final = 100_000

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

    async def publish_inbound(self, salon_id: int, fields: Mapping[str, FieldValue]) -> str:
        """XADD one message; returns its stream id (``"1700000000000-0"``).

        ``salon_id`` is always written as a field of its own so consumers can route without
        parsing the rest. Raises :class:`RedisUnavailable` — the caller keeps the message in
        PostgreSQL and announces it again later.
        """
        if "salon_id" in fields:
            raise ValueError("salon_id is given as its own argument, not among the fields")
        args: list[FieldValue] = ["salon_id", salon_id]
        for name, value in fields.items():
            args += [name, value]
        stream_id = await self._client.execute("XADD", self.name, "MAXLEN", "~", self.maxlen, "*", *args)
        return str(stream_id)

    async def length(self) -> int:
        """XLEN of the stream (for ``/status`` and tests)."""
        return int(await self._client.execute("XLEN", self.name))
