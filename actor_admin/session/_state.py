"""The session's state record: everything ``step`` needs to decide, and nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, final, get_args

import attrs

# docs/websocket.md#states: these exact names appear in websocket frames, /status and the database.
StateName = Literal[
    "idle",
    "starting",
    "qr",
    "pairing_code",
    "connecting",
    "connected",
    "reconnecting",
    "logged_out",
    "conflict",
    "failed",
    "frozen",
    "uninstalled",
]
STATES: Final[tuple[StateName, ...]] = get_args(StateName)

# States in which the machine has a link open (it emitted ``Connect`` and has not seen it end).
LINK_STATES: Final[frozenset[StateName]] = frozenset({"starting", "qr", "pairing_code", "connecting", "connected"})
# Linking states: a link without credentials, showing QRs or a pairing code to a viewer.
LINKING_STATES: Final[frozenset[StateName]] = frozenset({"starting", "qr", "pairing_code"})
# Frozen or uninstalled: YClients withdrew the app (its freeze / uninstall webhooks). These are
# also the ``integration_status`` values of such a salon. The session refuses work in them, and
# nothing may start a session for such a salon until a new marketplace redirect (``Start``).
INACTIVE_STATES: Final[frozenset[StateName]] = frozenset({"frozen", "uninstalled"})


@final
@attrs.frozen
class CurrentQr:
    """The QR viewers should see now; a late joiner gets it too."""

    code: str
    seq: int
    expires_at: float


@final
@attrs.frozen
class Pairing:
    """The one pairing-code request of this company.

    ``waiters`` are the request ids awaiting the code; ``code`` is ``None`` until it arrives.
    """

    phone: str
    waiters: tuple[int | None, ...] = ()
    code: str | None = None
    expires_at: float | None = None


@final
@attrs.frozen(kw_only=True)
class SessionState:
    """One company's connection as the machine sees it. Build the first with :meth:`initial`.

    Attributes:
        name: the state (docs/websocket.md#states).
        has_credentials: stored device credentials exist (a linked device).
        credentials_confirmed: the stored credentials are known to be this transport's: it made
            them (their recorded origin), or connected with them. Only then does an unlinking answer
            (401 …) delete them; otherwise it may be a transport that never knew them answering
            (docs/data.md#credential-origin), and they are kept.
        phone: the linked account's number, digits only, once known.
        reason: why the session is in ``name`` (snake_case: ``qr_expired``, ``client_outdated`` …);
            the actor shows it as ``last_error``.
        qr: the QR on display (state ``qr``; kept while a pairing code is on display).
        pairing: the pending or displayed pairing code.
        failures: consecutive failed connection attempts — the back-off exponent; reset on connect.
        reconnects: times of automatic reconnects within the policy window (the fast budget).
        slow_reconnects: attempts made on the slow cadence since the fast budget was spent; 0 while
            reconnects are fast. Reset on connect.
        last_restart_at: when the last 515 arrived (a 401 shortly after it is transient once).
        restart_grace_used: the transient-401 allowance of the last 515 is spent.
        conflict_retry_used: the one retry after a 440 is spent (until the next ``Start``).
        ban_expires_at: the end of a 402 ban.
        timers: armed timers by name → deadline; lets ``step`` ignore stale ``Timer`` events.
        jitter_seed: chosen by the actor per session, so sessions spread their retries.
    """

    name: StateName = "idle"
    has_credentials: bool = False
    credentials_confirmed: bool = False
    phone: str | None = None
    reason: str | None = None
    qr: CurrentQr | None = None
    pairing: Pairing | None = None
    failures: int = 0
    reconnects: tuple[float, ...] = ()
    slow_reconnects: int = 0
    last_restart_at: float | None = None
    restart_grace_used: bool = False
    conflict_retry_used: bool = False
    ban_expires_at: float | None = None
    timers: Mapping[str, float] = attrs.field(factory=dict)
    jitter_seed: int = 0

    @classmethod
    def initial(
        cls,
        *,
        has_credentials: bool,
        phone: str | None = None,
        jitter_seed: int = 0,
        credentials_confirmed: bool = False,
    ) -> SessionState:
        """A new actor's state: ``idle``, with what the store knows. Feed ``Start`` next.

        ``credentials_confirmed``: the stored credentials were made by the transport this node uses.
        """
        return cls(
            has_credentials=has_credentials,
            phone=phone,
            jitter_seed=jitter_seed,
            credentials_confirmed=has_credentials and credentials_confirmed,
        )

    @property
    def link_open(self) -> bool:
        """Whether the machine believes a link is open."""
        return self.name in LINK_STATES
