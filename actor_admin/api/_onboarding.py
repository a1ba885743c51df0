"""The connect page's commands, once for both of its ways in: REST (``_marketplace.py``) and the
websocket (``_ws.py``).

Each command returns the session's outcome (a :class:`~actor_admin.session.Refused` for anything
that went wrong, including a salon YClients withdrew and a session that did not answer); the
REST routes turn it into a status code and JSON, the websocket into frames.
"""

from __future__ import annotations

from typing import Final

from actor_admin.actors import OWNER_UNREACHABLE, SessionUnavailable
from actor_admin.session import (
    INACTIVE_REFUSALS,
    INACTIVE_STATES,
    INVALID_PHONE,
    Command,
    Outcome,
    PairingCode,
    Refused,
    RequestPairingCode,
    RequestQr,
    StateName,
    Status,
    normalise_phone,
)

from ._services import Services
from ._tokens import OnboardingClaims, TokenError, verify_onboarding_token

# More than any phone number with its punctuation; the rest of a longer string is ignored.
PHONE_MAX_CHARS: Final = 64
# An answer a session never gives to these commands, should one come anyway.
NO_STATUS: Final = Refused("unavailable", "the WhatsApp session gave no status; try again")
NO_PAIRING_CODE: Final = Refused("unavailable", "the WhatsApp session gave no pairing code; try again")


def verify_token(services: Services, token: str, *, where: str) -> OnboardingClaims | None:
    """The claims of a valid onboarding token, or None (signature, audience, expiry all checked).

    A missing ("") or invalid token is a refusal, counted and logged as ``bad_token`` with ``where``
    (the route and the client's address) and the reason (never the token itself).
    """
    try:
        return verify_onboarding_token(services.settings.jwt_secret, token, now=services.wall_clock())
    except TokenError as exc:
        services.refusals.refused("bad_token", f"onboarding token refused ({exc}) at {where}")
        return None


def unavailable(exc: SessionUnavailable) -> Refused:
    """What a viewer is told when the salon's session could not answer."""
    if exc.code == "timeout":
        return Refused("busy", "the WhatsApp session is busy; try again in a moment")
    if exc.code == OWNER_UNREACHABLE:
        return Refused(
            OWNER_UNREACHABLE, "the server that runs this WhatsApp session is not reachable; try again shortly"
        )
    return Refused("unavailable", f"the WhatsApp session is unavailable ({exc.code}); try again shortly")


async def inactive_status(services: Services, salon_id: int) -> StateName | None:
    """``frozen``/``uninstalled`` when YClients withdrew the app from this salon, else None.

    Checked before any session is started for a viewer: an uninstalled salon's page (its token is
    valid for an hour) must not link WhatsApp again behind YClients' back.
    """
    company = await services.store.companies.get(salon_id)
    if company is not None and company.integration_status in INACTIVE_STATES:
        status: StateName = company.integration_status
        return status
    return None


async def _ask(services: Services, salon_id: int, command: Command) -> Outcome:
    """``command``'s outcome; refused for a withdrawn salon (no session is started for it)."""
    inactive = await inactive_status(services, salon_id)
    if inactive is not None:
        return INACTIVE_REFUSALS[inactive]
    try:
        outcome: Outcome = await services.router.ask(salon_id, command)
    except SessionUnavailable as exc:
        return unavailable(exc)
    return outcome


async def request_qr(services: Services, salon_id: int) -> Status | Refused:
    """Start QR linking if no link runs; the session's status (its QR, once shown, also reaches
    every viewer through the bus)."""
    outcome = await _ask(services, salon_id, RequestQr())
    return outcome if isinstance(outcome, Status | Refused) else NO_STATUS


async def request_pairing_code(services: Services, salon_id: int, phone_raw: str) -> PairingCode | Refused:
    """A pairing code for the number as typed; refused at once when it is not a phone number."""
    phone = normalise_phone(phone_raw[:PHONE_MAX_CHARS])
    if phone is None:
        return INVALID_PHONE  # no session is started for a number that cannot be one
    outcome = await _ask(services, salon_id, RequestPairingCode(phone))
    return outcome if isinstance(outcome, PairingCode | Refused) else NO_PAIRING_CODE
