"""``step``: one event in, the next state and the effects out. No I/O, no clock, no randomness.

The actor's loop is: take a message from the mailbox → ``step(state, event, now)`` → perform the
effects in order → keep the new state. Everything the session decides lives here (the policy table
and its numbers are in :mod:`._policy`); everything it does lives in the actor.

How to read this module: :func:`step` dispatches on the event; each ``_on_*`` handler works on a
:class:`_Step` builder, which keeps the bookkeeping that every transition shares — cancelling the
timers that do not belong to the new state, publishing the state frame when the state changes,
answering pairing-code callers when their link goes away.

Message pacing is not the machine's business: ``Send`` in ``connected`` yields ``SendMessage`` at
once and the actor spaces the actual sends (a per-company token bucket needs the clock, and holding
a queue of texts in the state record would make every state transition copy it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, assert_never

import attrs

from ._effects import (
    Alert,
    AskPairingCode,
    CancelTimer,
    CheckOwnership,
    ConfirmCredentials,
    Connect,
    DeleteCredentials,
    Disconnect,
    Effect,
    LogEvent,
    LogoutDevice,
    PersistConnection,
    PersistUnlinked,
    Publish,
    RecordSendOutcome,
    Reply,
    SendMessage,
    SetTimer,
    StoreCredentials,
    StoreMessage,
)
from ._frames import (
    connected_frame,
    error_frame,
    pairing_code_frame,
    qr_frame,
    reason_error_frame,
    remaining_s,
    state_frame,
)
from ._inputs import (
    Event,
    Freeze,
    LinkFailed,
    Logout,
    OwnershipChecked,
    PairingCodeFailed,
    RequestPairingCode,
    RequestQr,
    Send,
    Start,
    Stop,
    Timer,
    Uninstall,
)
from ._outcomes import Accepted, Outcome, PairingCode, Refused, Status
from ._phone import normalise_phone, phone_from_jid
from ._policy import WHATSAPP_UNREACHABLE, ReasonAction, SessionPolicy, action_for, jitter_fraction, reason_name
from ._state import INACTIVE_STATES, LINK_STATES, LINKING_STATES, CurrentQr, Pairing, SessionState, StateName
from ._texts import (
    ALREADY_LINKED,
    CONFLICT,
    INACTIVE_REFUSALS,
    INVALID_PHONE,
    INVALID_RECIPIENT,
    LINKED_MEANWHILE,
    LINKING_ENDED,
    PAIRING_CODE_EXPIRED,
    PAIRING_CODE_TIMED_OUT,
    PAIRING_FOR_ANOTHER_NUMBER,
    PAIRING_JUST_EXPIRED,
    SHUTTING_DOWN,
    TEMPORARILY_BANNED,
    TRANSPORT_MISMATCH,
    UNLINKING,
    not_connected,
    pairing_code_refused,
)
from ._transport_events import (
    CONNECTION_LOST,
    LOGGED_OUT,
    NETWORK_ERROR,
    Connected,
    CredsUpdated,
    Disconnected,
    KeepaliveRestored,
    KeepaliveTimeout,
    MessageReceived,
    MessageSent,
    PairingCodeIssued,
    PairSuccess,
    QrIssued,
)

# --- timers ------------------------------------------------------------------------------------

TIMER_BACKOFF: Final = "backoff"  # reconnecting: the next attempt
TIMER_CONNECT_DEADLINE: Final = "connect_deadline"  # a link that neither connects nor ends
TIMER_KEEPALIVE: Final = "keepalive_grace"  # connected: keep-alives missed, waiting for them back
TIMER_SILENCE: Final = "silence"  # connected: nothing heard for too long (off by default)
TIMER_CONFLICT_RETRY: Final = "conflict_retry"  # conflict: the one retry after a 440
TIMER_BAN_EXPIRY: Final = "ban_expiry"  # failed (402): the ban ends
TIMER_PAIRING_REQUEST: Final = "pairing_request"  # a pairing code was asked for and has not come
TIMER_PAIRING_EXPIRY: Final = "pairing_code_expiry"  # the displayed pairing code expires

TIMER_NAMES: Final[tuple[str, ...]] = (
    TIMER_BACKOFF,
    TIMER_CONNECT_DEADLINE,
    TIMER_KEEPALIVE,
    TIMER_SILENCE,
    TIMER_CONFLICT_RETRY,
    TIMER_BAN_EXPIRY,
    TIMER_PAIRING_REQUEST,
    TIMER_PAIRING_EXPIRY,
)

_LINKING_TIMERS = frozenset({TIMER_CONNECT_DEADLINE, TIMER_PAIRING_REQUEST, TIMER_PAIRING_EXPIRY})
# Which timers may stay armed in each state; entering a state cancels the others.
_TIMERS_OF: Final[Mapping[StateName, frozenset[str]]] = {
    "idle": frozenset(),
    "starting": _LINKING_TIMERS,
    "qr": _LINKING_TIMERS,
    "pairing_code": _LINKING_TIMERS,
    "connecting": frozenset({TIMER_CONNECT_DEADLINE}),
    "connected": frozenset({TIMER_KEEPALIVE, TIMER_SILENCE}),
    "reconnecting": frozenset({TIMER_BACKOFF}),
    "logged_out": frozenset(),
    "conflict": frozenset({TIMER_CONFLICT_RETRY}),
    "failed": frozenset({TIMER_BAN_EXPIRY}),
    "frozen": frozenset(),
    "uninstalled": frozenset(),
}

# --- what callers are told -------------------------------------------------------------------


def status_of(state: SessionState, now: float) -> Status:
    """What ``RequestQr`` answers: the state and, in ``qr``, the QR to show."""
    if state.name == "qr" and state.qr is not None:
        return Status(
            state.name,
            phone=state.phone,
            qr=state.qr.code,
            qr_seq=state.qr.seq,
            expires_in=remaining_s(state.qr.expires_at, now),
        )
    return Status(state.name, phone=state.phone)


# --- the builder ------------------------------------------------------------------------------


class _Step:
    """Accumulates one step's new state and effects; lives only inside :func:`step`."""

    def __init__(self, state: SessionState, now: float, policy: SessionPolicy) -> None:
        self.state = state
        self.now = now
        self.policy = policy
        self.effects: list[Effect] = []

    def emit(self, *effects: Effect) -> None:
        self.effects.extend(effects)

    def update(self, **changes: Any) -> None:
        self.state = attrs.evolve(self.state, **changes)

    def reply(self, request_id: int | None, outcome: Outcome) -> None:
        self.emit(Reply(request_id, outcome))

    def reply_before(self, kind: type[Effect], request_id: int | None, outcome: Outcome) -> None:
        """Answer ahead of this step's first ``kind`` effect (at the end if there is none)."""
        at = next((i for i, effect in enumerate(self.effects) if isinstance(effect, kind)), len(self.effects))
        self.effects.insert(at, Reply(request_id, outcome))

    def log(self, type: str, **data: str | int | float | None) -> None:
        self.emit(LogEvent(type, data))

    def set_timer(self, name: str, at: float) -> None:
        self.emit(SetTimer(name, at))
        self.update(timers={**self.state.timers, name: at})

    def cancel_timer(self, name: str) -> None:
        if name in self.state.timers:
            self.emit(CancelTimer(name))
            self.update(timers={k: v for k, v in self.state.timers.items() if k != name})

    def enter(self, name: StateName, *, reason: str | None, qr: CurrentQr | None = None) -> None:
        """Move to ``name``: drop what does not belong there, tell viewers if anything changed.
        ``qr``: a new QR to show, set in the same copy of the state."""
        for timer in sorted(set(self.state.timers) - _TIMERS_OF[name]):
            self.cancel_timer(timer)
        if name not in LINKING_STATES:
            self.drop_pairing(LINKING_ENDED)
            self.update(qr=None)
        old = self.state
        if qr is None:
            self.update(name=name, reason=reason)
        else:
            self.update(name=name, reason=reason, qr=qr)
        frame = state_frame(self.state.name, self.state.phone, self.state.reason)
        if frame != state_frame(old.name, old.phone, old.reason):
            # A new state, or ``reconnecting`` for another reason (e.g. onto the slow cadence).
            self.emit(Publish(frame))
        if name != old.name or reason != old.reason:
            error = reason_error_frame(self.state, self.now)
            if error is not None:
                self.emit(Publish(error))

    def connect(self, *, with_credentials: bool) -> None:
        """Open a link (the caller has entered ``starting`` or ``connecting`` already)."""
        self.emit(Connect(with_credentials))
        timeout = self.policy.connect_timeout_s if with_credentials else self.policy.qr_link_timeout_s
        self.set_timer(TIMER_CONNECT_DEADLINE, self.now + timeout)

    def disconnect(self) -> None:
        if self.state.link_open:
            self.emit(Disconnect())

    def drop_pairing(self, refused: Refused) -> None:
        """Forget the pairing request, refusing whoever still waits for its code."""
        pairing = self.state.pairing
        if pairing is None:
            return
        for request_id in pairing.waiters:
            self.reply(request_id, refused)
        self.cancel_timer(TIMER_PAIRING_REQUEST)
        self.cancel_timer(TIMER_PAIRING_EXPIRY)
        self.update(pairing=None)

    def result(self) -> tuple[SessionState, list[Effect]]:
        return self.state, self.effects


# --- shared transitions ----------------------------------------------------------------------


def _reset_history(b: _Step) -> None:
    """A person asked for a fresh start: forget failures, the spent conflict retry and any ban."""
    b.update(failures=0, reconnects=(), slow_reconnects=0, conflict_retry_used=False, ban_expires_at=None)


def _begin(b: _Step, *, reason: str | None = None) -> None:
    """Open a link from a state without one: with credentials when the device is linked."""
    if b.state.has_credentials:
        b.enter("connecting", reason=reason)
        b.connect(with_credentials=True)
    else:
        b.enter("starting", reason=reason)
        b.connect(with_credentials=False)


def _recent_reconnects(b: _Step) -> tuple[float, ...]:
    window_start = b.now - b.policy.reconnect_window_s
    return tuple(t for t in b.state.reconnects if t > window_start)


def _slow(b: _Step) -> bool:
    """Is the fast reconnect budget spent (or already being waited out on the slow cadence)?"""
    return b.state.slow_reconnects > 0 or len(_recent_reconnects(b)) >= b.policy.max_reconnects


def _slow_delay(b: _Step) -> float:
    attempt = b.state.slow_reconnects
    # Its own jitter key (negative: the fast delays use the failure count), still fixed by the seed.
    return b.policy.slow_backoff.delay(attempt, jitter_fraction(b.state.jitter_seed, -1 - attempt))


def _reconnect(b: _Step, *, delay: float, reason: str, slow: bool = False, held: bool = False) -> None:
    """An automatic reconnect, now (``delay`` 0) or after ``delay``.

    Once the fast budget is spent (or ``slow``: the node knows WhatsApp is unreachable), the
    reconnect waits ``delay`` on the slow cadence instead (the caller's slow delay, or the next one
    of :attr:`SessionPolicy.slow_backoff`): state ``reconnecting``, reason ``whatsapp_unreachable``,
    forever — never ``failed`` for a transient cause. ``held``: the node held the dial back in an
    outage it already reported once for all its salons, so no alert per salon.
    """
    recent = _recent_reconnects(b)
    if not slow and _slow(b):
        slow, delay = True, _slow_delay(b)
    b.update(reconnects=(*recent, b.now))
    if slow:
        if b.state.slow_reconnects == 0:
            b.log("reconnect_slowed", last_reason=reason, reconnects=len(recent))
        if b.state.slow_reconnects == 0 and not held:
            b.emit(
                Alert(
                    WHATSAPP_UNREACHABLE,
                    f"{len(recent)} reconnects within {b.policy.reconnect_window_s:g} s; last: {reason}; "
                    "retrying every few minutes",
                )
            )
        b.update(slow_reconnects=b.state.slow_reconnects + 1)
        b.enter("reconnecting", reason=WHATSAPP_UNREACHABLE)
        b.set_timer(TIMER_BACKOFF, b.now + delay)
    elif delay <= 0:
        _begin(b, reason=reason)
    else:
        b.enter("reconnecting", reason=reason)
        b.set_timer(TIMER_BACKOFF, b.now + delay)


def _retry_later(b: _Step, reason: str, *, upstream_down: bool = False) -> None:
    """A transient failure: back off and reconnect a linked device; a linking one waits for a viewer.

    Without credentials a reconnect would start a fresh QR batch nobody asked for.
    """
    if not b.state.has_credentials:
        _linking_ended(b, "connection_lost")
        return
    failures = b.state.failures + 1
    b.update(failures=failures)
    slow = upstream_down or _slow(b)
    if slow:
        delay = _slow_delay(b)
    else:
        delay = b.policy.backoff.delay(failures - 1, jitter_fraction(b.state.jitter_seed, failures))
    if not upstream_down:  # a dial the node held back is no disconnect: nothing to add to the history
        b.log("disconnected", reason=reason, retry_in_s=round(delay, 3))
    _reconnect(b, delay=delay, reason=reason, slow=slow, held=upstream_down)


def _linking_ended(b: _Step, reason: str) -> None:
    """A QR / pairing-code link ended: wait for a viewer to ask again (no new QRs on our own)."""
    b.log(reason)
    b.enter("idle", reason=reason)


def _unlinked(b: _Step, reason: str) -> None:
    """The device is gone for good: forget its credentials."""
    if b.state.has_credentials:
        b.emit(DeleteCredentials())
    b.emit(PersistUnlinked(reason))
    b.log("logged_out", reason=reason)
    b.update(
        has_credentials=False, credentials_confirmed=False, phone=None, restart_grace_used=False, last_restart_at=None
    )
    b.enter("logged_out", reason=reason)


def _unlinked_unconfirmed(b: _Step, reason: str, detail: str) -> None:
    """An unlinking answer about credentials this transport neither made nor ever connected with:
    likely a transport that never knew them (a simulator answering for real credentials). Delete
    nothing; stop (no reconnect loop) and say why. The session forgets them for this run, so a person
    may still link anew (which replaces them); the next start of the node tries them again."""
    b.log("credentials_kept", reason=reason, detail=detail)
    b.emit(
        Alert(
            TRANSPORT_MISMATCH,
            f"WhatsApp answered {reason} for credentials this transport did not make; kept them, not deleted",
        )
    )
    b.update(has_credentials=False, credentials_confirmed=False, restart_grace_used=False, last_restart_at=None)
    b.enter("failed", reason=TRANSPORT_MISMATCH)


def _conflict(b: _Step) -> None:
    """440: another connection holds the device. Never reconnect to fight it."""
    b.enter("conflict", reason="connection_replaced")
    if b.state.conflict_retry_used:
        b.log("conflict_final")
        b.emit(
            Alert(
                "connection_replaced",
                "replaced again after the one retry; staying stopped until an operator restarts it",
            )
        )
    else:
        b.log("connection_replaced")
        b.emit(CheckOwnership())


def _banned(b: _Step, expires_at: float | None) -> None:
    at = expires_at if expires_at is not None else b.now + b.policy.ban_fallback_s
    b.update(ban_expires_at=at)
    b.enter("failed", reason="temporarily_banned")
    b.set_timer(TIMER_BAN_EXPIRY, at)
    b.log("temporarily_banned", expires_in_s=round(at - b.now, 3))
    b.emit(Alert("temporarily_banned", f"WhatsApp banned the number for {at - b.now:.0f} s"))


def _banned_now(state: SessionState, now: float) -> bool:
    return state.name == "failed" and state.ban_expires_at is not None and now < state.ban_expires_at


# --- transport events -------------------------------------------------------------------------


def _on_disconnected(
    b: _Step, reason: int, detail: str, ban_expires_at: float | None, *, upstream_down: bool = False
) -> None:
    s = b.state
    if not s.link_open:
        return  # the end of a link we already closed
    action = action_for(reason)
    name = reason_name(reason)
    if (
        reason == LOGGED_OUT
        and s.has_credentials
        and s.last_restart_at is not None
        and b.now - s.last_restart_at <= b.policy.restart_grace_s
        and not s.restart_grace_used
    ):
        # Evolution #2498: right after pairing, WhatsApp may send 401 once before accepting the
        # new device; treating that as final unlinked freshly paired salons.
        b.update(restart_grace_used=True)
        b.log("logged_out_after_restart", detail=detail)
        action = ReasonAction.TRANSIENT
    match action:
        case ReasonAction.RESTART:
            b.update(last_restart_at=b.now, restart_grace_used=False)
            b.log("restart_required")
            _reconnect(b, delay=0, reason=name)
        case ReasonAction.CONFLICT:
            _conflict(b)
        case ReasonAction.UNLINKED if s.has_credentials and not s.credentials_confirmed:
            _unlinked_unconfirmed(b, name, detail)
        case ReasonAction.UNLINKED:
            _unlinked(b, name)
        case ReasonAction.BANNED:
            _banned(b, ban_expires_at)
        case ReasonAction.OUTDATED:
            b.enter("failed", reason=name)
            b.log(name, detail=detail)
            b.emit(Alert(name, f"WhatsApp refused the client as outdated: {detail or 'no detail'}"))
        case ReasonAction.TRANSIENT:
            if s.name in LINKING_STATES and not s.has_credentials and reason == CONNECTION_LOST:
                _linking_ended(b, "qr_expired")  # WhatsApp's QR batch ran out
            else:
                _retry_later(b, name, upstream_down=upstream_down)
        case _ as unreachable:
            assert_never(unreachable)


def _on_qr(b: _Step, event: QrIssued) -> None:
    if b.state.name not in LINKING_STATES:
        return
    qr = CurrentQr(event.code, event.seq, b.now + event.ttl_s)
    if b.state.name == "pairing_code":
        b.update(qr=qr)
        return  # keep the code on screen; the QR is there if the code expires
    b.enter("qr", reason=None, qr=qr)
    b.emit(Publish(qr_frame(qr, b.now)))


def _on_pairing_code(b: _Step, event: PairingCodeIssued) -> None:
    pairing = b.state.pairing
    if b.state.name not in LINKING_STATES or pairing is None:
        return
    expires_at = b.now + event.ttl_s
    for request_id in pairing.waiters:
        b.reply(request_id, PairingCode(event.code, remaining_s(expires_at, b.now)))
    b.update(pairing=Pairing(pairing.phone, code=event.code, expires_at=expires_at))
    b.cancel_timer(TIMER_PAIRING_REQUEST)
    b.enter("pairing_code", reason=None)
    b.set_timer(TIMER_PAIRING_EXPIRY, expires_at)
    b.emit(Publish(pairing_code_frame(event.code, remaining_s(expires_at, b.now))))


def _on_pair_success(b: _Step, event: PairSuccess) -> None:
    if b.state.name not in LINKING_STATES:
        return
    phone = phone_from_jid(event.jid) or b.state.phone
    b.update(phone=phone, failures=0)
    b.log("paired", phone=phone)
    b.drop_pairing(LINKED_MEANWHILE)
    b.enter("connecting", reason=None)
    # The QR link's deadline was sized for a whole QR batch; from here on it is a connect.
    b.set_timer(TIMER_CONNECT_DEADLINE, b.now + b.policy.connect_timeout_s)


def _on_connected(b: _Step, event: Connected) -> None:
    if b.state.name not in LINK_STATES or b.state.name == "connected":
        return
    phone = phone_from_jid(event.jid) or b.state.phone or ""
    confirmed = b.state.credentials_confirmed
    b.update(phone=phone or None, has_credentials=True, credentials_confirmed=True, failures=0, slow_reconnects=0)
    b.enter("connected", reason=None)
    b.emit(Publish(connected_frame(phone)), PersistConnection(phone))
    if not confirmed:  # credentials of unknown origin just worked here: they are this transport's
        b.emit(ConfirmCredentials(phone or None))
    b.log("connected", phone=phone)
    if b.policy.silence_timeout_s is not None:
        b.set_timer(TIMER_SILENCE, b.now + b.policy.silence_timeout_s)


def _on_keepalive_timeout(b: _Step) -> None:
    if b.state.name != "connected" or TIMER_KEEPALIVE in b.state.timers:
        return
    b.log("keepalive_timeout")
    b.set_timer(TIMER_KEEPALIVE, b.now + b.policy.keepalive_grace_s)


def _on_keepalive_restored(b: _Step) -> None:
    if b.state.name != "connected" or TIMER_KEEPALIVE not in b.state.timers:
        return
    b.log("keepalive_restored")
    b.cancel_timer(TIMER_KEEPALIVE)


def _watchdog_reconnect(b: _Step, reason: str) -> None:
    """The link says it is up but WhatsApp is not answering: replace the link (no logout)."""
    b.log("watchdog_reconnect", reason=reason)
    b.emit(Disconnect())
    _reconnect(b, delay=0, reason=reason)


# --- timers ------------------------------------------------------------------------------------


def _on_timer(b: _Step, name: str) -> None:
    at = b.state.timers.get(name)
    if at is None or b.now < at:
        return  # cancelled, or superseded by a later deadline while this one was in the mailbox
    b.update(timers={k: v for k, v in b.state.timers.items() if k != name})
    s = b.state
    if name == TIMER_BACKOFF and s.name == "reconnecting":
        _begin(b, reason=s.reason)
    elif name == TIMER_CONNECT_DEADLINE and s.name in LINKING_STATES:
        b.emit(Disconnect())
        _linking_ended(b, "qr_expired")
    elif name == TIMER_CONNECT_DEADLINE and s.name == "connecting":
        b.emit(Disconnect())
        _retry_later(b, "connect_timeout")
    elif name == TIMER_KEEPALIVE and s.name == "connected":
        _watchdog_reconnect(b, "keepalive_timeout")
    elif name == TIMER_SILENCE and s.name == "connected":
        _watchdog_reconnect(b, "silence_timeout")
    elif name == TIMER_CONFLICT_RETRY and s.name == "conflict":
        b.update(conflict_retry_used=True)
        b.log("conflict_retry")
        if s.has_credentials:
            _reconnect(b, delay=0, reason="conflict_retry")
        else:
            b.enter("idle", reason=None)
    elif name == TIMER_BAN_EXPIRY and s.name == "failed":
        b.update(ban_expires_at=None, failures=0, reconnects=(), slow_reconnects=0)
        b.log("ban_expired")
        if s.has_credentials:
            _begin(b)
        else:
            b.enter("idle", reason=None)
    elif name == TIMER_PAIRING_REQUEST and s.name in LINKING_STATES:
        _pairing_failed(b, PAIRING_CODE_TIMED_OUT)
    elif name == TIMER_PAIRING_EXPIRY and s.name == "pairing_code":
        b.update(pairing=None)
        qr = s.qr if s.qr is not None and s.qr.expires_at > b.now else None
        b.update(qr=qr)
        b.emit(Publish(error_frame("pairing_code_expired", PAIRING_CODE_EXPIRED)))
        b.enter("qr" if qr is not None else "starting", reason=None)
        if qr is not None:
            b.emit(Publish(qr_frame(qr, b.now)))


def _pairing_failed(b: _Step, message: str) -> None:
    pairing = b.state.pairing
    if pairing is None or pairing.code is not None:
        return
    b.drop_pairing(Refused("pairing_failed", message))
    b.log("pairing_failed", detail=message)
    b.emit(Publish(error_frame("pairing_failed", message)))


# --- commands ----------------------------------------------------------------------------------

_REFUSALS: Final[Mapping[str, Refused]] = {**INACTIVE_REFUSALS, "conflict": CONFLICT}


def _inactive(state: SessionState) -> Refused | None:
    """The refusal for a frozen or uninstalled session, which only ``Start`` may wake."""
    return INACTIVE_REFUSALS.get(state.name)


def _ban_refusal(state: SessionState, now: float) -> Refused | None:
    if not _banned_now(state, now):
        return None
    return TEMPORARILY_BANNED


def _on_start(b: _Step, request_id: int | None) -> None:
    s = b.state
    if (refused := _ban_refusal(s, b.now)) is not None:
        b.reply(request_id, refused)
        return
    if s.name in LINK_STATES:
        b.reply(request_id, Accepted(s.name))
        return
    _reset_history(b)
    if s.has_credentials:
        _begin(b)
    elif s.name in INACTIVE_STATES | {"failed", "conflict", "reconnecting"}:
        b.enter("idle", reason=None)
    b.log("started", state=b.state.name)
    b.reply(request_id, Accepted(b.state.name))


def _on_request_qr(b: _Step, request_id: int | None) -> None:
    s = b.state
    refused = _REFUSALS.get(s.name) or _ban_refusal(s, b.now)
    if refused is not None:
        b.reply(request_id, refused)
        return
    if s.name not in ("idle", "logged_out", "failed"):
        b.reply(request_id, status_of(b.state, b.now))
        return
    _reset_history(b)
    _begin(b)
    # Answered before the link is opened: the asker (a viewer's page) waits for no dial, and is
    # woken outside the first QR's path (docs/architecture.md#qr-latency). The answer is the same.
    b.reply_before(Connect, request_id, status_of(b.state, b.now))


_PAIRABLE_STATES: Final = LINKING_STATES | {"idle", "logged_out", "failed"}


def _pairing_refusal(state: SessionState, phone: str | None, now: float) -> Refused | None:
    """Why a pairing code for ``phone`` cannot be asked for now, if it cannot."""
    refused = _REFUSALS.get(state.name) or _ban_refusal(state, now)
    if refused is not None:
        return refused
    if phone is None:
        return INVALID_PHONE
    if state.has_credentials or state.name not in _PAIRABLE_STATES:
        return ALREADY_LINKED
    pairing = state.pairing
    if pairing is not None and pairing.phone != phone:
        return PAIRING_FOR_ANOTHER_NUMBER
    if pairing is not None and pairing.expires_at is not None and pairing.expires_at <= now:
        return PAIRING_JUST_EXPIRED
    return None


def _on_request_pairing_code(b: _Step, phone_raw: str, request_id: int | None) -> None:
    """One pairing request per company: the same number joins it, another number is refused."""
    phone = normalise_phone(phone_raw)
    refused = _pairing_refusal(b.state, phone, b.now)
    if refused is not None or phone is None:
        b.reply(request_id, refused or INVALID_PHONE)
        return
    pairing = b.state.pairing
    if pairing is not None and pairing.code is None:
        b.update(pairing=attrs.evolve(pairing, waiters=(*pairing.waiters, request_id)))
        return  # answered when the code arrives
    if pairing is not None and pairing.code is not None and pairing.expires_at is not None:
        b.reply(request_id, PairingCode(pairing.code, remaining_s(pairing.expires_at, b.now)))
        return
    if not b.state.link_open:
        _reset_history(b)
        _begin(b)
    b.update(pairing=Pairing(phone, waiters=(request_id,)))
    b.emit(AskPairingCode(phone))
    b.set_timer(TIMER_PAIRING_REQUEST, b.now + b.policy.pairing_request_timeout_s)


def _on_stop(b: _Step, request_id: int | None) -> None:
    s = b.state
    b.drop_pairing(SHUTTING_DOWN)
    b.disconnect()
    for timer in sorted(s.timers):
        b.cancel_timer(timer)
    if s.link_open or s.name == "reconnecting":
        b.enter("idle", reason="stopped")
    b.log("stopped")
    b.reply(request_id, Accepted(b.state.name))


def _on_logout(b: _Step, request_id: int | None) -> None:
    s = b.state
    if (refused := _inactive(s)) is not None:
        b.reply(request_id, refused)
        return
    if s.has_credentials:
        b.drop_pairing(UNLINKING)
        if s.link_open:
            b.emit(LogoutDevice())
        _unlinked(b, "logout")
    elif s.link_open:  # a QR or code on display, nothing linked: just stop showing it
        b.emit(Disconnect())
        b.enter("idle", reason=None)
    b.reply(request_id, Accepted(b.state.name))


def _on_freeze(b: _Step, request_id: int | None) -> None:
    s = b.state
    if s.name == "uninstalled":
        b.reply(request_id, INACTIVE_REFUSALS["uninstalled"])
        return
    if s.name != "frozen":
        b.drop_pairing(INACTIVE_REFUSALS["frozen"])
        b.disconnect()
        b.enter("frozen", reason="frozen")
        b.log("frozen")
    b.reply(request_id, Accepted("frozen"))


def _on_uninstall(b: _Step, request_id: int | None) -> None:
    s = b.state
    if s.name != "uninstalled":
        b.drop_pairing(INACTIVE_REFUSALS["uninstalled"])
        b.disconnect()
        if s.has_credentials:
            b.emit(DeleteCredentials())
        b.emit(PersistUnlinked("uninstalled"))
        b.update(has_credentials=False, credentials_confirmed=False, phone=None)
        b.enter("uninstalled", reason="uninstalled")
        b.log("uninstalled")
    b.reply(request_id, Accepted("uninstalled"))


def _on_send(b: _Step, event: Send) -> None:
    s = b.state
    to = normalise_phone(event.to)
    if (refused := _inactive(s)) is not None:
        b.reply(event.request_id, refused)
    elif to is None:
        b.reply(event.request_id, INVALID_RECIPIENT)
    elif s.name != "connected":
        b.reply(event.request_id, not_connected(s.name))
    else:
        b.emit(SendMessage(to, event.text, event.idempotency_key))
        b.reply(event.request_id, Accepted(s.name))


# --- the entry point ---------------------------------------------------------------------------

DEFAULT_POLICY: Final = SessionPolicy()

# Transport events that prove the link carries traffic (a missed keep-alive proves the opposite).
_ACTIVITY: Final = (
    QrIssued,
    PairingCodeIssued,
    PairSuccess,
    CredsUpdated,
    Connected,
    KeepaliveRestored,
    MessageReceived,
    MessageSent,
)


def step(
    state: SessionState, event: Event, now: float, *, policy: SessionPolicy = DEFAULT_POLICY
) -> tuple[SessionState, list[Effect]]:
    """Apply ``event`` at time ``now`` (trio clock seconds) to ``state``.

    Returns the next state and the effects to perform, in order. Never raises for any event in
    any state: an event that means nothing in the current state (the late end of a closed link, a
    superseded timer) returns ``state`` unchanged and no effects.
    """
    b = _Step(state, now, policy)
    was_connected = state.name == "connected"
    match event:
        case Start(request_id=rid):
            _on_start(b, rid)
        case RequestQr(request_id=rid):
            _on_request_qr(b, rid)
        case RequestPairingCode(phone=phone, request_id=rid):
            _on_request_pairing_code(b, phone, rid)
        case Stop(request_id=rid):
            _on_stop(b, rid)
        case Logout(request_id=rid):
            _on_logout(b, rid)
        case Freeze(request_id=rid):
            _on_freeze(b, rid)
        case Uninstall(request_id=rid):
            _on_uninstall(b, rid)
        case Send():
            _on_send(b, event)
        case Timer(name=name):
            _on_timer(b, name)
        case OwnershipChecked(owned=owned):
            if state.name == "conflict":
                if not owned:
                    b.log("ownership_lost")
                elif not state.conflict_retry_used and TIMER_CONFLICT_RETRY not in state.timers:
                    b.log("conflict_retry_scheduled", delay_s=policy.conflict_retry_delay_s)
                    b.set_timer(TIMER_CONFLICT_RETRY, now + policy.conflict_retry_delay_s)
        case LinkFailed(detail=detail, upstream_down=upstream_down):
            _on_disconnected(b, NETWORK_ERROR, detail, None, upstream_down=upstream_down)
        case PairingCodeFailed(detail=detail):
            if state.name in LINKING_STATES:
                _pairing_failed(b, pairing_code_refused(detail))
        case Disconnected(reason=reason, detail=detail, ban_expires_at=ban_expires_at):
            _on_disconnected(b, reason, detail, ban_expires_at)
        case QrIssued():
            _on_qr(b, event)
        case PairingCodeIssued():
            _on_pairing_code(b, event)
        case PairSuccess():
            _on_pair_success(b, event)
        case CredsUpdated(credentials=credentials):
            if state.link_open:
                b.emit(StoreCredentials(credentials, account=state.phone))
                b.update(has_credentials=True, credentials_confirmed=True)
        case Connected():
            _on_connected(b, event)
        case KeepaliveTimeout():
            _on_keepalive_timeout(b)
        case KeepaliveRestored():
            _on_keepalive_restored(b)
        case MessageReceived():
            if state.name != "uninstalled":
                b.emit(StoreMessage(event))
        case MessageSent():
            b.emit(RecordSendOutcome(event))
        case _ as unknown:
            assert_never(unknown)
    silence = policy.silence_timeout_s
    if silence is not None and was_connected and b.state.name == "connected" and isinstance(event, _ACTIVITY):
        b.set_timer(TIMER_SILENCE, now + silence)
    return b.result()
