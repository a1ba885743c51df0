"""An in-memory stand-in for the store, for actor tests on virtual time.

Why not PostgreSQL here: under ``MockClock(autojump_threshold=0)`` virtual time jumps whenever
every task waits, including while a query is on the wire, which would fire the driver's own
timeouts. The actor against the real store, on real time, is exercised through a whole node by
tests/api/ (e.g. test_activation_e2e.py).
Its behaviour mirrors actor_admin.store's contract (atomic inbound insert, activation once), and
mypy checks it against the ports the actor declares (``make lint`` includes this file): the
``_checked_*`` lines at the end fail type checking the day it drifts from them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import attrs

from actor_admin.actors import ActivationPayload, InboundSink, SessionStore
from actor_admin.json_types import JSON
from actor_admin.session import phone_from_jid
from actor_admin.store import CredentialOrigin, Fenced


@attrs.define
class MemoryCompany:
    salon_id: int
    integration_status: str = "pending_whatsapp"
    whatsapp_connected: bool = False
    whatsapp_phone: str | None = None


class _Companies:
    def __init__(self, root: MemoryStore) -> None:
        self.root = root
        self.rows: dict[int, MemoryCompany] = {}

    def add(self, salon_id: int, status: str = "pending_whatsapp") -> MemoryCompany:
        self.rows[salon_id] = MemoryCompany(salon_id, status)
        return self.rows[salon_id]

    async def record_connection(
        self, salon_id: int, phone: str, *, activation_payload: ActivationPayload | None = None, fence: int = 0
    ) -> MemoryCompany:
        self.root.check_fence(salon_id, fence)
        row = self.rows.setdefault(salon_id, MemoryCompany(salon_id))
        row.whatsapp_connected = True
        row.whatsapp_phone = phone_from_jid(phone)
        if activation_payload is not None and row.integration_status == "pending_whatsapp":
            row.integration_status = "activating"
            self.root.outbox.append(dict(activation_payload("k" * 64)))
        return row

    async def mark_disconnected(self, salon_id: int, *, fence: int = 0) -> MemoryCompany | None:
        self.root.check_fence(salon_id, fence)
        row = self.rows.get(salon_id)
        if row is not None:
            row.whatsapp_connected = False
        return row


class _Credentials:
    def __init__(self, root: MemoryStore) -> None:
        self.root = root
        self.blobs: dict[int, bytes] = {}
        self.origins: dict[int, CredentialOrigin] = {}

    async def load(self, salon_id: int) -> bytes | None:
        return self.blobs.get(salon_id)

    async def origin(self, salon_id: int) -> CredentialOrigin | None:
        return self.origins.get(salon_id) if salon_id in self.blobs else None

    async def save(
        self, salon_id: int, data: bytes, *, transport: str | None = None, account: str | None = None, fence: int = 0
    ) -> bool:
        self.root.check_fence(salon_id, fence)
        self.blobs[salon_id] = data
        self.origins[salon_id] = CredentialOrigin(transport, phone_from_jid(account) if account else None)
        return True

    async def confirm(self, salon_id: int, transport: str, account: str | None, *, fence: int = 0) -> bool:
        self.root.check_fence(salon_id, fence)
        old = self.origins.get(salon_id)
        if salon_id not in self.blobs or old is None:
            return False
        new = CredentialOrigin(transport, phone_from_jid(account) if account else old.account)
        self.origins[salon_id] = new
        return new != old

    async def delete(self, salon_id: int, *, fence: int = 0) -> bool:
        self.root.check_fence(salon_id, fence)
        self.origins.pop(salon_id, None)
        return self.blobs.pop(salon_id, None) is not None


class _Events:
    def __init__(self, root: MemoryStore) -> None:
        self.root = root
        self.rows: list[tuple[int, str, JSON]] = []

    async def append(self, salon_id: int, type: str, data: JSON | None = None, *, fence: int = 0) -> int:
        self.root.check_fence(salon_id, fence)
        self.rows.append((salon_id, type, dict(data or {})))
        return len(self.rows)

    def types(self, salon_id: int) -> list[str]:
        return [t for s, t, _ in self.rows if s == salon_id]


class _Messages:
    def __init__(self, root: MemoryStore) -> None:
        self.root = root
        self.inbound: dict[tuple[int, str], tuple[str, str]] = {}
        self.inbound_lids: dict[tuple[int, str], str] = {}
        self.published: list[tuple[int, str]] = []
        self.outcomes: dict[tuple[int, str], tuple[str | None, str | None]] = {}

    @asynccontextmanager
    async def grouped(self, options: object = None) -> AsyncIterator[None]:
        """The node opens a group commit around its actors; in memory every write is already one."""
        yield

    async def insert_inbound(
        self,
        salon_id: int,
        wa_id: str,
        peer: str,
        text: str,
        at: object = None,
        *,
        fence: int = 0,
        peer_lid: str | None = None,
    ) -> bool:
        self.root.check_fence(salon_id, fence)
        if (salon_id, wa_id) in self.inbound:
            return False
        self.inbound[(salon_id, wa_id)] = (peer, text)
        if peer_lid is not None:
            self.inbound_lids[(salon_id, wa_id)] = peer_lid
        return True

    async def mark_published(self, salon_id: int, wa_ids: Sequence[str], *, fence: int = 0) -> int:
        self.root.check_fence(salon_id, fence)
        self.published += [(salon_id, w) for w in wa_ids]
        return len(wa_ids)

    async def record_send_outcome(
        self, salon_id: int, key: str, *, wa_id: str | None, error: str | None, fence: int = 0
    ) -> bool:
        self.root.check_fence(salon_id, fence)
        self.outcomes[(salon_id, key)] = (wa_id, error)
        return True


class MemoryStore:
    def __init__(self) -> None:
        self.outbox: list[JSON] = []
        self.companies = _Companies(self)
        self.credentials = _Credentials(self)
        self.events = _Events(self)
        self.messages = _Messages(self)
        #: Each salon's current fence, as ``salon_owners`` would hold it: a write stating another
        #: (non-zero) fence is refused as PostgreSQL's trigger refuses it.
        self.fences: dict[int, int] = {}
        self.refused: list[tuple[int, int]] = []

    def check_fence(self, salon_id: int, fence: int) -> None:
        if fence and self.fences.get(salon_id) != fence:
            self.refused.append((salon_id, fence))
            raise Fenced(salon_id, fence)


class MemoryInbound:
    """The stream; like a node's announcer it records each announcement in ``store``, when given."""

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.entries: list[tuple[int, dict[str, str]]] = []
        self.store = store

    async def publish_inbound(self, salon_id: int, fields: Mapping[str, str], *, fence: int = 0) -> str:
        self.entries.append((salon_id, dict(fields)))
        if self.store is not None:
            await self.store.messages.mark_published(salon_id, [fields["wa_id"]], fence=fence)
        return f"{len(self.entries)}-0"


_checked_store: SessionStore = MemoryStore()
_checked_inbound: InboundSink = MemoryInbound()
