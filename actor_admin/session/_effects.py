"""What the session machine asks the actor to do, and the answers it gives callers.

``step`` returns effects in the order the actor must perform them. Notes for the actor:

- At most one link is open at a time. ``Connect`` is only emitted when the machine believes no
  link is open (it emits ``Disconnect`` first when replacing one). The actor should still drop
  events from links it has closed (tag each link's ``deliver`` with a generation): a ``Disconnect``
  cannot recall events already in the mailbox.
- ``SetTimer(name, at)`` replaces any timer of that name; the actor feeds ``Timer(name)`` at ``at``.
  ``CancelTimer`` may name a timer that already fired; late or duplicate ``Timer`` events are safe
  (the machine checks its own record of deadlines).
- ``PersistConnection`` comes with every opened connection; the actor records it and, in the same
  transaction, the store enqueues the YClients activation while the company's
  ``integration_status`` still needs it (the machine does not know that status, so it asks on
  every ``Connected``).
- ``Publish`` frames are the websocket frames of docs/websocket.md#server-frames, exactly as viewers receive them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import final

import attrs

from ._frames import Frame
from ._outcomes import Outcome
from ._transport_events import MessageReceived, MessageSent

# --- the link -----------------------------------------------------------------------------


@final
@attrs.frozen
class Connect:
    """Open a link; with the stored credentials, or without them to start a fresh QR batch."""

    with_credentials: bool


@final
@attrs.frozen
class Disconnect:
    """Close the open link without logging out (credentials stay valid)."""


@final
@attrs.frozen
class LogoutDevice:
    """Unlink the device on the phone through the open link, then close it."""


@final
@attrs.frozen
class AskPairingCode:
    """Ask the open link for a pairing code for ``phone`` (digits); feed back ``PairingCodeFailed``."""

    phone: str


@final
@attrs.frozen
class SendMessage:
    """Send through the open link (the actor paces sends); report the result as ``MessageSent``."""

    to: str
    text: str
    idempotency_key: str


# --- the store and the outbox -------------------------------------------------------------


@final
@attrs.frozen
class PersistConnection:
    """``whatsapp_connected = true``, ``whatsapp_phone = phone`` (digits only), ``connected_at = now``,
    and the YClients activation into the outbox if it is still due (see the module docstring)."""

    phone: str


@final
@attrs.frozen
class PersistUnlinked:
    """``whatsapp_connected = false``: the device is gone (``reason`` as in the company event)."""

    reason: str


@final
@attrs.frozen
class StoreCredentials:
    """Store the device credentials (encrypted at rest), replacing older ones, recording that this
    node's transport made them for the account ``account`` (digits; None while not known)."""

    credentials: bytes = attrs.field(repr=False)
    account: str | None = None


@final
@attrs.frozen
class ConfirmCredentials:
    """The stored credentials connected through this node's transport: record it as their origin,
    with the account ``account`` (digits), so a later unlinking answer from it is believed."""

    account: str | None


@final
@attrs.frozen
class DeleteCredentials:
    """Delete the stored device credentials."""


@final
@attrs.frozen
class StoreMessage:
    """Store an inbound message (unique per company and ``wa_id``) and publish it to the stream."""

    message: MessageReceived


@final
@attrs.frozen
class RecordSendOutcome:
    """Record how a send ended: ``wa_id`` when sent, ``error`` when not."""

    outcome: MessageSent


@final
@attrs.frozen
class LogEvent:
    """Append to ``company_events``."""

    type: str
    data: Mapping[str, str | int | float | None] = attrs.field(factory=dict)


@final
@attrs.frozen
class Alert:
    """Something an operator must look at (logged at error level, counted in metrics)."""

    code: str
    message: str


# --- the cluster, viewers, time, callers ----------------------------------------------------


@final
@attrs.frozen
class CheckOwnership:
    """Re-check that this node still owns the company; feed back ``OwnershipChecked``."""


@final
@attrs.frozen
class Publish:
    """Send ``frame`` to every viewer of the company (docs/websocket.md#server-frames)."""

    frame: Frame


@final
@attrs.frozen
class SetTimer:
    """Feed ``Timer(name)`` at ``at`` (trio clock seconds), replacing a timer of that name."""

    name: str
    at: float


@final
@attrs.frozen
class CancelTimer:
    """Forget the timer ``name`` if it is pending."""

    name: str


@final
@attrs.frozen
class Reply:
    """Answer the caller that sent the command with ``request_id``."""

    request_id: int | None
    outcome: Outcome


Effect = (
    Connect
    | Disconnect
    | LogoutDevice
    | AskPairingCode
    | SendMessage
    | PersistConnection
    | PersistUnlinked
    | StoreCredentials
    | ConfirmCredentials
    | DeleteCredentials
    | StoreMessage
    | RecordSendOutcome
    | LogEvent
    | Alert
    | CheckOwnership
    | Publish
    | SetTimer
    | CancelTimer
    | Reply
)
