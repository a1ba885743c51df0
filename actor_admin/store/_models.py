"""The records the store hands out: plain frozen values, detached from any connection."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, TypeVar, get_args

import attrs

from actor_admin.json_types import JSON

IntegrationStatus = Literal[
    "pending_whatsapp", "activating", "active", "activation_failed", "frozen", "uninstalled"
]
INTEGRATION_STATUSES: tuple[IntegrationStatus, ...] = get_args(IntegrationStatus)
Direction = Literal["in", "out"]
MessageStatus = Literal["received", "queued", "sent", "delivered", "read", "failed"]

ACTIVATION = "activation"
"""Outbox ``kind`` of the YClients activation callback."""


@attrs.frozen
class MarketplaceUser:
    """The YClients user who installed the app, from ``user_data`` (every field may be missing)."""

    user_id: str | None = None
    name: str | None = None
    phone: str | None = None
    email: str | None = None


@attrs.frozen
class Company:
    """A salon's row in ``companies``."""

    salon_id: int
    title: str | None
    integration_status: IntegrationStatus
    whatsapp_connected: bool
    whatsapp_phone: str | None
    whatsapp_connected_at: datetime | None
    connected_at: datetime | None
    disconnected_at: datetime | None
    api_key: str | None = attrs.field(repr=False)
    user_id: str | None
    user_name: str | None
    user_phone: str | None
    user_email: str | None
    registered_at: datetime
    created_at: datetime
    updated_at: datetime


@attrs.frozen
class ConnectionRecord:
    """What :meth:`Companies.record_connection` did."""

    company: Company
    activation_enqueued: bool
    outbox_id: int | None


@attrs.frozen
class CredentialOrigin:
    """Which WhatsApp transport made a salon's stored credentials, and for which account.

    ``transport`` is ``neonize`` or ``simulator``; None: stored before origins were recorded and not
    connected since (docs/data.md#credential-origin). ``account``: the linked number, digits only.
    """

    transport: str | None
    account: str | None


@attrs.frozen
class CompanyEvent:
    id: int
    salon_id: int
    type: str
    data: JSON
    at: datetime


@attrs.frozen
class OutboxItem:
    id: int
    kind: str
    salon_id: int
    payload: JSON
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    deadline: datetime | None
    delivered_at: datetime | None
    failed_at: datetime | None
    created_at: datetime


@attrs.frozen
class OutboxStats:
    """Backlog for /status and doctor: ``oldest_pending_s`` is None when nothing is pending."""

    pending: int
    oldest_pending_s: float | None
    failed: int


@attrs.frozen
class Message:
    id: int
    salon_id: int
    direction: Direction
    wa_id: str | None
    peer: str
    text: str
    status: MessageStatus
    idempotency_key: str | None
    at: datetime
    published_at: datetime | None
    #: The sender's LID when WhatsApp addressed the chat by one (``sql/005_message_lid.sql``).
    peer_lid: str | None = None


R = TypeVar("R")


def from_row(cls: type[R], row: JSON) -> R:
    """Build a record from a row, ignoring columns the record does not name (added by later migrations)."""
    names = {f.name for f in attrs.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in row.items() if k in names})
