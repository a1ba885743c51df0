"""The per-reason disconnect policy and its numbers — the one place to read how a session reacts.

WhatsApp ends a connection with a reason code (see :mod:`._transport_events`). What the session
does next depends only on that code, and on two pieces of recent history (a 515 just before a 401;
whether the one conflict retry was already spent):

==========================  ====================================================================
reason                      action (:class:`ReasonAction`)
==========================  ====================================================================
515 restart required        ``RESTART``: reconnect at once with the new credentials; a 401 within
                            ``restart_grace_s`` after it is treated as ``TRANSIENT`` once
440 connection replaced     ``CONFLICT``: never fight — state ``conflict``, re-check ownership, at
                            most one delayed retry (``conflict_retry_delay_s``), then stay stopped
                            and alert
401, 403, 406, 411          ``UNLINKED``: final — delete credentials, state ``logged_out``,
                            ``whatsapp_connected = false``, event recorded
402 temporarily banned      ``BANNED``: state ``failed`` (reason ``temporarily_banned``) until the
                            ban expires, then reconnect; the expiry is shown to viewers
405 client outdated         ``OUTDATED``: state ``failed`` (reason ``client_outdated``), alert, no loop
408, 428, 500, 503, 0 and   ``TRANSIENT``: exponential back-off with jitter; once ``max_reconnects``
any code not listed         automatic reconnects fall within ``reconnect_window_s``, the slow
                            cadence (``slow_backoff``) forever, state ``reconnecting`` with reason
                            ``whatsapp_unreachable``, until a connection succeeds
==========================  ====================================================================

Without credentials (a QR or pairing-code link) a ``TRANSIENT`` end is not retried: 408 there
means WhatsApp's QR batch ran out, so the session goes ``idle`` with reason ``qr_expired`` (any
other transient code: ``connection_lost``) and issues no new QR until a viewer asks.

Defaults of :class:`SessionPolicy` and why:

- back-off ``5 s × 2ⁿ`` capped at 60 s, then ±20 % jitter: 5, 10, 20, 40, 60, 60 … s — the original
  system's schedule, with jitter so a network blip does not make every salon reconnect at once.
- the slow cadence after 8 automatic reconnects inside 10 minutes (515 restarts, back-off retries,
  watchdog and conflict reconnects all count): eight consecutive failures take about five minutes.
  From then on a transient cause is retried **forever** but slowly — ``60 s × 2ⁿ`` capped at 240 s,
  ±25 % jitter: 45 s to 5 min between attempts — because a transient cause (WhatsApp down, egress
  cut) heals by itself and nobody should have to restart 1,000 salons afterwards. A connection that
  flaps (connects, drops, connects …) never makes more than 8 fast reconnects per 10 minutes: the
  window counts reconnects, not failures, which a "reset on open" counter alone would not bound.
  Permanent causes (unlinked, banned until a time, client outdated) never enter this loop.
- ``connect_timeout_s`` 60 s to get from dialling to connected (Baileys' connectTimeout);
  ``qr_link_timeout_s`` 200 s for a QR link (WhatsApp's batch lasts ≈160 s and ends with 408; this
  is only a guard for a transport that never says so).
- ``keepalive_grace_s`` 30 s: after a missed keep-alive the transport gets that long to report
  ``KeepaliveRestored`` before the session drops the link and reconnects ("says connected,
  delivers nothing"). ``silence_timeout_s`` (off by default) additionally reconnects a connected
  session that reported nothing at all for that long — useful only with a transport that reports
  activity periodically; WhatsApp itself may stay silent for hours on a quiet number.
- ``conflict_retry_delay_s`` 60 s before the single retry after a 440 (time for the other
  connection, e.g. a stale process, to go away); ``ban_fallback_s`` 1 hour when a 402 carries no
  expiry.
- ``pairing_request_timeout_s`` 30 s for the transport to produce a pairing code.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from typing import Final, final

import attrs

from actor_admin.backoff import Backoff

from ._transport_events import (
    BAD_SESSION,
    BANNED,
    CLIENT_OUTDATED,
    CONNECTION_CLOSED,
    CONNECTION_LOST,
    CONNECTION_REPLACED,
    FORBIDDEN,
    LOGGED_OUT,
    MULTIDEVICE_MISMATCH,
    NETWORK_ERROR,
    QR_BATCH_S,
    RESTART_REQUIRED,
    TEMPORARILY_BANNED,
    UNAVAILABLE_SERVICE,
)


class ReasonAction(enum.Enum):
    """What a disconnect reason makes the session do (see the module docstring's table)."""

    RESTART = "restart"
    CONFLICT = "conflict"
    UNLINKED = "unlinked"
    BANNED = "banned"
    OUTDATED = "outdated"
    TRANSIENT = "transient"


REASON_POLICY: Final[Mapping[int, ReasonAction]] = {
    RESTART_REQUIRED: ReasonAction.RESTART,
    CONNECTION_REPLACED: ReasonAction.CONFLICT,
    LOGGED_OUT: ReasonAction.UNLINKED,
    FORBIDDEN: ReasonAction.UNLINKED,
    BANNED: ReasonAction.UNLINKED,
    MULTIDEVICE_MISMATCH: ReasonAction.UNLINKED,
    TEMPORARILY_BANNED: ReasonAction.BANNED,
    CLIENT_OUTDATED: ReasonAction.OUTDATED,
    CONNECTION_LOST: ReasonAction.TRANSIENT,
    CONNECTION_CLOSED: ReasonAction.TRANSIENT,
    BAD_SESSION: ReasonAction.TRANSIENT,
    UNAVAILABLE_SERVICE: ReasonAction.TRANSIENT,
    NETWORK_ERROR: ReasonAction.TRANSIENT,
}

# The codes after which the device is gone from the phone (its credentials are worthless).
UNLINKED_REASONS: Final[frozenset[int]] = frozenset(
    code for code, action in REASON_POLICY.items() if action is ReasonAction.UNLINKED
)

# snake_case names for reason codes: the session's ``reason``, /status ``last_error``, event data.
REASON_NAMES: Final[Mapping[int, str]] = {
    RESTART_REQUIRED: "restart_required",
    CONNECTION_REPLACED: "connection_replaced",
    LOGGED_OUT: "logged_out",
    FORBIDDEN: "forbidden",
    BANNED: "banned",
    MULTIDEVICE_MISMATCH: "multidevice_mismatch",
    TEMPORARILY_BANNED: "temporarily_banned",
    CLIENT_OUTDATED: "client_outdated",
    CONNECTION_LOST: "connection_lost",
    CONNECTION_CLOSED: "connection_closed",
    BAD_SESSION: "bad_session",
    UNAVAILABLE_SERVICE: "service_unavailable",
    NETWORK_ERROR: "network_error",
}


def action_for(reason: int) -> ReasonAction:
    """The policy for ``reason``; codes WhatsApp may add later are retried with back-off."""
    return REASON_POLICY.get(reason, ReasonAction.TRANSIENT)


def reason_name(reason: int) -> str:
    """``reason``'s snake_case name, ``disconnected_<code>`` for codes without one."""
    return REASON_NAMES.get(reason, f"disconnected_{reason}")


# 5, 10, 20, 40, 60, 60 … s, ±20 % (see the module docstring).
RECONNECT_BACKOFF: Final = Backoff(initial_s=5.0, factor=2.0, max_s=60.0, jitter=0.2)
# Once the fast budget is spent: 60, 120, 240, 240 … s, ±25 %: every 45 s to 5 min, forever.
SLOW_RECONNECT_BACKOFF: Final = Backoff(initial_s=60.0, factor=2.0, max_s=240.0, jitter=0.25)
#: The reason of a ``reconnecting`` session on the slow cadence (shown to viewers and in /status).
WHATSAPP_UNREACHABLE: Final = "whatsapp_unreachable"


@final
@attrs.frozen(kw_only=True)
class SessionPolicy:
    """The session machine's numbers; the defaults are explained in this module's docstring."""

    #: Reconnect delays; ``attempt`` is the number of consecutive failures minus one.
    backoff: Backoff = RECONNECT_BACKOFF
    #: Reconnect delays once ``max_reconnects`` fall within ``reconnect_window_s``; ``attempt`` counts
    #: the slow attempts since the fast budget was spent.
    slow_backoff: Backoff = SLOW_RECONNECT_BACKOFF
    max_reconnects: int = attrs.field(default=8, validator=attrs.validators.ge(1))
    reconnect_window_s: float = attrs.field(default=600.0, validator=attrs.validators.gt(0.0))
    restart_grace_s: float = attrs.field(default=30.0, validator=attrs.validators.gt(0.0))
    conflict_retry_delay_s: float = attrs.field(default=60.0, validator=attrs.validators.gt(0.0))
    ban_fallback_s: float = attrs.field(default=3600.0, validator=attrs.validators.gt(0.0))
    connect_timeout_s: float = attrs.field(default=60.0, validator=attrs.validators.gt(0.0))
    qr_link_timeout_s: float = attrs.field(default=QR_BATCH_S + 40.0, validator=attrs.validators.gt(0.0))
    keepalive_grace_s: float = attrs.field(default=30.0, validator=attrs.validators.gt(0.0))
    silence_timeout_s: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0.0))
    )
    pairing_request_timeout_s: float = attrs.field(default=30.0, validator=attrs.validators.gt(0.0))


def jitter_fraction(seed: int, failures: int) -> float:
    """A fraction in [0, 1) fixed by ``(seed, failures)``: jitter without global random state.

    Each session gets its own ``seed`` from the actor, so sessions that dropped together spread
    their retries, while a replayed test sees the same delays.
    """
    return random.Random(seed * 1_000_003 + failures).random()
