"""What a ``Reply`` carries back to the caller of a command."""

from __future__ import annotations

from typing import final

import attrs

from ._state import StateName


@final
@attrs.frozen
class Accepted:
    """The command was taken; ``state`` is the session's state after it."""

    state: StateName


@final
@attrs.frozen
class Status:
    """The answer to ``RequestQr``: the state after it and the QR to show, if any."""

    state: StateName
    phone: str | None = None
    qr: str | None = None
    qr_seq: int | None = None
    expires_in: int | None = None


@final
@attrs.frozen
class PairingCode:
    """The answer to ``RequestPairingCode``: the code to type on the phone."""

    code: str
    expires_in: int


@final
@attrs.frozen
class Refused:
    """The command was not carried out. ``code`` is snake_case, stable, and meant for callers:

    ``not_connected``, ``invalid_phone``, ``already_linked``, ``pairing_in_progress``,
    ``pairing_failed``, ``pairing_unavailable``, ``conflict``, ``temporarily_banned``, ``frozen``,
    ``uninstalled``, ``stopped``.
    """

    code: str
    message: str


Outcome = Accepted | Status | PairingCode | Refused
