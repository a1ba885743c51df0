"""A small driver for the session machine: feeds events at chosen times and keeps the state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from actor_admin.session import (
    DEFAULT_POLICY,
    RESTART_REQUIRED,
    Connected,
    CredsUpdated,
    Disconnected,
    Effect,
    Event,
    Frame,
    PairSuccess,
    Publish,
    QrIssued,
    Refused,
    Reply,
    RequestQr,
    SessionPolicy,
    SessionState,
    StateName,
    Timer,
    step,
)

PHONE = "79001234567"
JID = f"{PHONE}:12@s.whatsapp.net"

E = TypeVar("E")


class Driver:
    """Holds one session's state and the virtual time; each call steps one event."""

    def __init__(
        self,
        state: SessionState | None = None,
        *,
        policy: SessionPolicy = DEFAULT_POLICY,
        now: float = 1000.0,
    ) -> None:
        self.state = state if state is not None else SessionState.initial(has_credentials=False)
        self.policy = policy
        self.now = now

    def __call__(self, event: Event, *, after: float = 0.0) -> list[Effect]:
        self.now += after
        self.state, effects = step(self.state, event, self.now, policy=self.policy)
        return effects

    def fire(self, name: str) -> list[Effect]:
        """Jump to the deadline of timer ``name`` and feed it, as the actor's timer would."""
        self.now = max(self.now, self.state.timers[name])
        return self(Timer(name))

    @property
    def name(self) -> StateName:
        return self.state.name


def of_type(effects: Sequence[Effect], kind: type[E]) -> list[E]:
    return [e for e in effects if isinstance(e, kind)]


def frames(effects: Sequence[Effect]) -> list[Frame]:
    return [e.frame for e in of_type(effects, Publish)]


def refusals(effects: Sequence[Effect]) -> list[str]:
    return [e.outcome.code for e in of_type(effects, Reply) if isinstance(e.outcome, Refused)]


# --- reaching each state the way a real session does -----------------------------------------


def showing_qr(policy: SessionPolicy = DEFAULT_POLICY) -> Driver:
    d = Driver(policy=policy)
    d(RequestQr())
    d(QrIssued("qr-1", 60.0, 1), after=1)
    return d


def just_restarted(policy: SessionPolicy = DEFAULT_POLICY) -> Driver:
    """Scanned, credentials stored, 515 received: reconnecting with the new credentials."""
    d = showing_qr(policy)
    d(PairSuccess(JID), after=10)
    d(CredsUpdated(b"device-keys"))
    d(Disconnected(RESTART_REQUIRED), after=1)
    return d


def connected(policy: SessionPolicy = DEFAULT_POLICY) -> Driver:
    """Connected long enough after the 515 that a 401 is final."""
    d = just_restarted(policy)
    d(Connected(JID), after=1)
    d.now += 60
    return d


def linked_and_idle(policy: SessionPolicy = DEFAULT_POLICY) -> Driver:
    """A new actor for a company with stored credentials this transport made, before ``Start``."""
    state = SessionState.initial(has_credentials=True, phone=PHONE, jitter_seed=7, credentials_confirmed=True)
    return Driver(state, policy=policy)


def linked_elsewhere_and_idle(policy: SessionPolicy = DEFAULT_POLICY) -> Driver:
    """A new actor for a company whose stored credentials another transport made (or of unknown
    origin: stored before origins were recorded), before ``Start``."""
    return Driver(SessionState.initial(has_credentials=True, phone=PHONE, jitter_seed=7), policy=policy)
