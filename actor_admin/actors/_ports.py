"""What a company actor needs of the rest of the node, and nothing more (docs/architecture.md#typed-seams).

The actor names the operations it performs; the composition root passes the real things (the
:class:`~actor_admin.store.Store`, a :class:`~actor_admin.cluster.Bus`, the
:class:`~actor_admin.cluster.InboundAnnouncer`), and the actor tests pass in-memory ones that mypy
checks against the same protocols (tests/actors/memory_store.py). Results the actor does not read
are ``object``: any implementation may answer what it likes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from actor_admin.json_types import JSON
from actor_admin.session import Frame
from actor_admin.store import CredentialOrigin

#: Makes the activation call's payload from the fresh ``api_key`` (docs/yclients.md#activation-call).
ActivationPayload = Callable[[str], JSON]


class SessionCompanies(Protocol):
    """The salon's record: connected (with the activation, atomically) or not.

    Every write takes the run's ``fence`` (docs/cluster.md#fencing-who-may-write-what-with-which-fence):
    PostgreSQL refuses it once another node owns the salon; 0 states none (one node, tests).
    """

    async def record_connection(
        self, salon_id: int, phone: str, *, activation_payload: ActivationPayload | None = None, fence: int = 0
    ) -> object: ...

    async def mark_disconnected(self, salon_id: int, *, fence: int = 0) -> object: ...


class SessionCredentials(Protocol):
    """The salon's WhatsApp credentials, so a restart reconnects without a new scan, and which transport
    made them (docs/data.md#credential-origin)."""

    async def load(self, salon_id: int) -> bytes | None: ...

    async def origin(self, salon_id: int) -> CredentialOrigin | None: ...

    async def save(
        self, salon_id: int, data: bytes, *, transport: str | None = None, account: str | None = None, fence: int = 0
    ) -> object: ...

    async def confirm(self, salon_id: int, transport: str, account: str | None, *, fence: int = 0) -> object: ...

    async def delete(self, salon_id: int, *, fence: int = 0) -> object: ...


class SessionEvents(Protocol):
    """The salon's audit trail."""

    async def append(self, salon_id: int, type: str, data: JSON | None = None, *, fence: int = 0) -> object: ...


class SessionMessages(Protocol):
    """Inbound messages (stored once per WhatsApp id) and the outcome of outbound ones."""

    async def insert_inbound(
        self, salon_id: int, wa_id: str, peer: str, text: str, *, fence: int = 0, peer_lid: str | None = None
    ) -> bool:
        """Store an inbound message; True only if it is new."""
        ...

    async def record_send_outcome(
        self, salon_id: int, idempotency_key: str, *, wa_id: str | None, error: str | None, fence: int = 0
    ) -> object: ...


class SessionStore(Protocol):
    """The store operations a company actor performs."""

    @property
    def companies(self) -> SessionCompanies: ...

    @property
    def credentials(self) -> SessionCredentials: ...

    @property
    def events(self) -> SessionEvents: ...

    @property
    def messages(self) -> SessionMessages: ...


class InboundSink(Protocol):
    """Where a new inbound message is announced to the AI product (docs/data.md#inbound-stream).

    The sink also records the announcement in the store (``published_at``), writing with ``fence``.
    It may only queue the message and announce it a moment later (a node's
    :class:`~actor_admin.cluster.InboundAnnouncer` does, many salons' at once).
    """

    async def publish_inbound(self, salon_id: int, fields: Mapping[str, str], *, fence: int = 0) -> object: ...


class FramePublisher(Protocol):
    """The half of the :class:`~actor_admin.cluster.Bus` an actor uses: frames out to every viewer."""

    async def publish(self, salon_id: int, frame: Frame) -> None: ...
