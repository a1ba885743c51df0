"""What the salon is told, in one place: the message of every error frame and refusal.

Codes are stable and meant for programs (the connect page picks its own Russian or English text
by code); the messages here are the English fallback every frame and HTTP answer carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ._outcomes import Refused
from ._state import INACTIVE_STATES

#: The reason of a session that kept its credentials after an unlinking answer from a transport that
#: did not make them (docs/data.md#credential-origin).
TRANSPORT_MISMATCH: Final = "transport_mismatch"

_UNLINKED = "WhatsApp was unlinked from this salon's phone. Link it again with a new QR code."

#: Why a session stays where it is, by its ``reason``: the error frame a viewer gets on joining.
ERROR_MESSAGES: Final[Mapping[str, str]] = {
    "qr_expired": "The QR codes expired. Ask for a new QR code to try again.",
    "connection_lost": "The connection to WhatsApp was lost while linking. Ask for a new QR code.",
    "logged_out": _UNLINKED,
    "forbidden": _UNLINKED,
    "banned": "WhatsApp banned this number and unlinked it.",
    "multidevice_mismatch": _UNLINKED,
    "logout": "WhatsApp was unlinked by support. Link it again with a new QR code.",
    "connection_replaced": (
        "Another connection is using this WhatsApp account, so this one stopped instead of fighting "
        "over it. Support has been alerted."
    ),
    "temporarily_banned": "WhatsApp temporarily banned this number.",
    "client_outdated": "WhatsApp no longer accepts this client version. Support has been alerted.",
    TRANSPORT_MISMATCH: (
        "The saved WhatsApp link was refused by a connection that did not create it, so it was kept, "
        "not deleted. Support has been alerted. If you unlinked the device on the phone, link it again "
        "with a new QR code."
    ),
    "frozen": "The integration is paused in YClients.",
    "uninstalled": "The integration was removed in YClients.",
}


def ban_ends_in(minutes: int) -> str:
    """Appended to the ``temporarily_banned`` message while the ban's end is known."""
    return f" The ban ends in about {minutes} min; the connection resumes by itself."


# --- refusals: the answer to a command the session did not carry out --------------------------

#: A frozen or uninstalled session refuses every command but ``Start``.
INACTIVE_REFUSALS: Final[Mapping[str, Refused]] = {
    name: Refused(name, ERROR_MESSAGES[name]) for name in sorted(INACTIVE_STATES)
}
CONFLICT: Final = Refused("conflict", "Another connection uses this WhatsApp account; an operator must restart it.")
TEMPORARILY_BANNED: Final = Refused("temporarily_banned", ERROR_MESSAGES["temporarily_banned"])
INVALID_PHONE: Final = Refused("invalid_phone", "A phone number has 10 to 15 digits, country code first.")
INVALID_RECIPIENT: Final = Refused("invalid_phone", "The recipient has 10 to 15 digits.")
ALREADY_LINKED: Final = Refused("already_linked", "A WhatsApp device is already linked; log it out first.")
PAIRING_FOR_ANOTHER_NUMBER: Final = Refused("pairing_in_progress", "A pairing code for another number is in progress.")
PAIRING_JUST_EXPIRED: Final = Refused("pairing_in_progress", "The previous code just expired; ask again.")


def not_connected(state: str) -> Refused:
    return Refused("not_connected", f"WhatsApp is not connected (state {state}).")


# Why a pairing-code request still waiting for its code is dropped.
LINKING_ENDED: Final = Refused("pairing_unavailable", "The linking attempt ended before a code arrived.")
LINKED_MEANWHILE: Final = Refused("already_linked", "The phone is linked now.")
SHUTTING_DOWN: Final = Refused("stopped", "The session is shutting down.")
UNLINKING: Final = Refused("stopped", "The device is being unlinked.")

# --- error frames that report an event rather than a state ------------------------------------

PAIRING_CODE_EXPIRED: Final = "The pairing code expired. Ask for a new one."
PAIRING_CODE_TIMED_OUT: Final = "WhatsApp did not send a pairing code in time."


def pairing_code_refused(detail: str) -> str:
    return f"WhatsApp refused to issue a pairing code: {detail or 'no detail'}"
