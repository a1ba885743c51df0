"""Properties of the session machine over arbitrary event sequences (Hypothesis)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from actor_admin.session import (
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
    RESTART_REQUIRED,
    STATES,
    TEMPORARILY_BANNED,
    TIMER_NAMES,
    UNAVAILABLE_SERVICE,
    CancelTimer,
    Connect,
    Connected,
    CredsUpdated,
    Disconnect,
    Disconnected,
    Effect,
    Event,
    Freeze,
    KeepaliveRestored,
    KeepaliveTimeout,
    LinkFailed,
    Logout,
    LogoutDevice,
    MessageReceived,
    MessageSent,
    OwnershipChecked,
    PairingCodeFailed,
    PairingCodeIssued,
    PairSuccess,
    Publish,
    QrIssued,
    Refused,
    Reply,
    RequestPairingCode,
    RequestQr,
    Send,
    SessionPolicy,
    SessionState,
    SetTimer,
    Start,
    Stop,
    Timer,
    Uninstall,
    step,
)
from actor_admin.session._frames import state_frame
from actor_admin.session._machine import _TIMERS_OF

from ._session_driver import JID, PHONE, connected

COMMANDS = (Start, RequestQr, RequestPairingCode, Stop, Logout, Freeze, Uninstall, Send)
REASONS = [
    RESTART_REQUIRED,
    CONNECTION_REPLACED,
    LOGGED_OUT,
    FORBIDDEN,
    BANNED,
    MULTIDEVICE_MISMATCH,
    TEMPORARILY_BANNED,
    CLIENT_OUTDATED,
    CONNECTION_LOST,
    CONNECTION_CLOSED,
    BAD_SESSION,
    UNAVAILABLE_SERVICE,
    NETWORK_ERROR,
    409,
]

events: st.SearchStrategy[Event] = st.one_of(
    st.sampled_from(
        [
            Start(),
            RequestQr(),
            RequestPairingCode(PHONE),
            RequestPairingCode("79990001122"),
            RequestPairingCode("12"),
            Stop(),
            Logout(),
            Freeze(),
            Uninstall(),
            Send(PHONE, "hi", "k"),
            PairSuccess(JID),
            CredsUpdated(b"keys"),
            Connected(JID),
            KeepaliveTimeout(),
            KeepaliveRestored(),
            MessageReceived("wa-1", PHONE, "hi", 0.0),
            MessageSent("k", "wa-2"),
            OwnershipChecked(owned=True),
            OwnershipChecked(owned=False),
            LinkFailed("dial"),
            LinkFailed("held back", upstream_down=True),
            PairingCodeFailed("no"),
        ]
    ),
    st.builds(QrIssued, st.just("qr"), st.sampled_from([20.0, 60.0]), st.integers(1, 6)),
    st.builds(PairingCodeIssued, st.just("ABCD-EFGH"), st.sampled_from([20.0, 160.0])),
    st.builds(
        Disconnected,
        st.sampled_from(REASONS),
        ban_expires_at=st.one_of(st.none(), st.floats(0, 20_000)),
    ),
    st.builds(Timer, st.sampled_from(TIMER_NAMES)),
)
disconnects = st.builds(
    Disconnected, st.sampled_from(REASONS), ban_expires_at=st.one_of(st.none(), st.floats(0, 20_000))
)
# Events that move a session on from each state, so that sequences reach deep states (a
# conflict's retry, a ban's expiry) instead of wandering among ignored events.
LIKELY: dict[str, st.SearchStrategy[Event]] = {
    "idle": st.sampled_from([RequestQr(), Start(), RequestPairingCode(PHONE)]),
    "starting": st.one_of(st.sampled_from([QrIssued("qr", 60.0, 1), PairSuccess(JID)]), disconnects),
    "qr": st.sampled_from([PairSuccess(JID), RequestPairingCode(PHONE), QrIssued("qr", 20.0, 2)]),
    "pairing_code": st.sampled_from([PairSuccess(JID), Timer("pairing_code_expiry"), PairingCodeIssued("X", 20)]),
    "connecting": st.one_of(
        st.sampled_from([CredsUpdated(b"k"), Connected(JID), Timer("connect_deadline")]), disconnects
    ),
    "connected": st.one_of(
        st.sampled_from([KeepaliveTimeout(), Timer("keepalive_grace"), Timer("silence"), Send(PHONE, "x", "k")]),
        disconnects,
    ),
    "reconnecting": st.just(Timer("backoff")),
    "conflict": st.sampled_from([OwnershipChecked(owned=True), Timer("conflict_retry")]),
    "failed": st.sampled_from([Timer("ban_expiry"), RequestQr()]),
    "logged_out": st.just(RequestQr()),
    "frozen": st.sampled_from([Start(), RequestQr()]),
    "uninstalled": st.sampled_from([Start(), RequestQr()]),
}

gaps = st.sampled_from([0.0, 0.5, 1.0, 5.0, 29.0, 31.0, 61.0, 200.0, 700.0, 4000.0])
initial_states = st.builds(
    SessionState.initial,
    has_credentials=st.booleans(),
    phone=st.sampled_from([None, PHONE]),
    jitter_seed=st.integers(0, 2**32),
)
policies = st.sampled_from([SessionPolicy(), SessionPolicy(silence_timeout_s=90.0, max_reconnects=3)])


@attrs.frozen
class Step:
    prev: SessionState
    event: Event
    now: float
    state: SessionState
    effects: list[Effect]

    @property
    def is_command(self) -> bool:
        return isinstance(self.event, COMMANDS)

    def emitted(self, kind: type) -> bool:
        return any(isinstance(e, kind) for e in self.effects)


def walk(
    data: st.DataObject,
    *,
    initial: SessionState | None = None,
    noise: st.SearchStrategy[Event] = events,
    likely: Mapping[str, st.SearchStrategy[Event]] = LIKELY,
) -> list[Step]:
    """A random session life: events mostly chosen (``likely``) to move it on from its state."""
    state = initial if initial is not None else data.draw(initial_states)
    policy = data.draw(policies)
    now = 0.0
    request_ids = itertools.count(1)
    steps = []
    for _ in range(data.draw(st.integers(0, 50))):
        now += data.draw(gaps)
        event = data.draw(st.one_of(likely[state.name], noise))
        if isinstance(event, COMMANDS):
            event = attrs.evolve(event, request_id=next(request_ids))
        prev = state
        state, effects = step(prev, event, now, policy=policy)
        steps.append(Step(prev, event, now, state, effects))
    return steps


examples = settings(max_examples=60, deadline=None)


@examples
@given(st.data())
def test_every_step_returns_a_valid_state(data: st.DataObject) -> None:
    for s in walk(data):
        assert isinstance(s.state, SessionState) and s.state.name in STATES


@examples
@given(st.data())
def test_never_connects_over_an_open_link(data: st.DataObject) -> None:
    link_open = False
    for s in walk(data):
        if isinstance(s.event, Disconnected | LinkFailed) and s.prev.link_open:
            link_open = False  # the link ended by itself
        for effect in s.effects:
            if isinstance(effect, Connect):
                assert not link_open, f"Connect while a link is open ({s.prev.name}, {s.event})"
                link_open = True
            elif isinstance(effect, Disconnect | LogoutDevice):
                assert link_open
                link_open = False
        assert link_open == s.state.link_open


@examples
@given(st.data())
def test_timers_on_record_are_exactly_those_armed(data: st.DataObject) -> None:
    armed: dict[str, float] = {}
    for s in walk(data):
        if isinstance(s.event, Timer) and s.now >= s.prev.timers.get(s.event.name, float("inf")):
            del armed[s.event.name]  # fired and consumed
        for effect in s.effects:
            if isinstance(effect, SetTimer):
                armed[effect.name] = effect.at
            elif isinstance(effect, CancelTimer):
                del armed[effect.name]
        assert armed == dict(s.state.timers)
        assert set(s.state.timers) <= _TIMERS_OF[s.state.name]


@examples
@given(st.data())
def test_frozen_and_uninstalled_stay_down_until_start(data: st.DataObject) -> None:
    for s in walk(data):
        if s.prev.name in ("frozen", "uninstalled") and not isinstance(s.event, Start):
            assert not s.emitted(Connect)
            assert s.state.name in ("frozen", "uninstalled")


@examples
@given(st.data())
def test_conflict_reconnects_by_itself_at_most_once(data: st.DataObject) -> None:
    # A connected session, no commands at all, and a replaced connection wherever one can happen.
    replaced: st.SearchStrategy[Event] = st.just(Disconnected(CONNECTION_REPLACED))
    likely = {**LIKELY, "connecting": st.one_of(replaced, st.just(Connected(JID))), "connected": replaced}
    noise = events.filter(lambda e: not isinstance(e, COMMANDS))
    automatic = 0
    for s in walk(data, initial=connected().state, noise=noise, likely=likely):
        if s.is_command:
            automatic = 0
        elif s.prev.name == "conflict" and s.emitted(Connect):
            automatic += 1
            assert automatic <= 1


@examples
@given(st.data())
def test_each_command_gets_one_reply_and_refusals_change_nothing(data: st.DataObject) -> None:
    for s in walk(data):
        own = [e for e in s.effects if isinstance(e, Reply) and e.request_id == getattr(s.event, "request_id", -1)]
        others = [e for e in s.effects if isinstance(e, Reply) and e not in own]
        if s.is_command:
            # a pairing-code request may be answered later, when the code arrives
            assert len(own) == 1 or (isinstance(s.event, RequestPairingCode) and not own)
        waiting = s.prev.pairing.waiters if s.prev.pairing else ()
        assert all(r.request_id in waiting for r in others)
        if own and isinstance(own[0].outcome, Refused):
            assert (s.state, s.effects) == (s.prev, own)


@examples
@given(st.data())
def test_viewers_hear_every_change_of_state_and_only_changes(data: st.DataObject) -> None:
    for s in walk(data):
        published = [e.frame for e in s.effects if isinstance(e, Publish) and e.frame["type"] == "state"]
        before = state_frame(s.prev.name, s.prev.phone, s.prev.reason)
        after = state_frame(s.state.name, s.state.phone, s.state.reason)
        if s.state.name == s.prev.name and after == before:
            assert published == []
        elif s.state.name != s.prev.name or after["state"] == "reconnecting":
            # A new state; or ``reconnecting`` for another reason (onto the slow cadence).
            assert published[-1] == after


# --- transient causes: retried forever, fast only within the budget -----------------------------

TRANSIENT_REASONS = [CONNECTION_LOST, CONNECTION_CLOSED, BAD_SESSION, UNAVAILABLE_SERVICE, NETWORK_ERROR, 409]
# Everything WhatsApp and the node can do to a linked session without a permanent cause or a person.
transient_events: st.SearchStrategy[Event] = st.one_of(
    st.builds(Disconnected, st.sampled_from([*TRANSIENT_REASONS, RESTART_REQUIRED])),
    st.sampled_from(
        [
            LinkFailed("dial"),
            LinkFailed("held back", upstream_down=True),
            Connected(JID),
            KeepaliveTimeout(),
            KeepaliveRestored(),
            CredsUpdated(b"k"),
            *(Timer(name) for name in TIMER_NAMES),
        ]
    ),
)


def transient_life(data: st.DataObject) -> tuple[SessionPolicy, list[Step]]:
    policy = data.draw(policies)
    state = connected(policy).state
    state = attrs.evolve(state, jitter_seed=data.draw(st.integers(0, 2**32)))
    now, steps = 10_000.0, []
    for _ in range(data.draw(st.integers(0, 120))):
        now += data.draw(gaps)
        prev = state
        # Mostly let the armed timer fire, so the session lives through many attempts.
        if state.timers and data.draw(st.booleans()):
            name = min(state.timers, key=lambda n: state.timers[n])
            now = max(now, state.timers[name])
            event: Event = Timer(name)
        else:
            event = data.draw(transient_events)
        state, effects = step(prev, event, now, policy=policy)
        steps.append(Step(prev, event, now, state, effects))
    return policy, steps


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_transient_cause_never_gives_up(data: st.DataObject) -> None:
    _, steps = transient_life(data)
    for s in steps:
        assert s.state.name in {"connecting", "connected", "reconnecting"}, (s.prev.name, s.event)
        assert s.state.has_credentials


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_reconnects_past_the_fast_budget_wait_the_slow_cadence(data: st.DataObject) -> None:
    policy, steps = transient_life(data)
    slow_low, slow_high = policy.slow_backoff.bounds(0)[0], policy.slow_backoff.max_s * (1 + policy.slow_backoff.jitter)
    for s in steps:
        recent = [t for t in s.prev.reconnects if t > s.now - policy.reconnect_window_s]
        spent = len(recent) >= policy.max_reconnects or s.prev.slow_reconnects > 0
        for effect in s.effects:
            if isinstance(effect, SetTimer) and effect.name == "backoff" and (spent or s.state.slow_reconnects):
                assert slow_low <= effect.at - s.now <= slow_high
            if isinstance(effect, Connect) and not isinstance(s.event, Timer):
                assert not spent, "an immediate reconnect past the fast budget"
        if s.state.name == "reconnecting" and s.state.slow_reconnects:
            assert s.state.reason == "whatsapp_unreachable"
        assert len(s.state.reconnects) <= policy.max_reconnects + policy.reconnect_window_s / slow_low + 1
