"""Every (state, event) pair of the session machine has a written-down outcome.

Each state is reached the way a real session reaches it (see ``representative``); each event
kind is fed once. The expected outcome is one of:

- ``-``  nothing happens: the state is unchanged and there are no effects;
- ``=``  the state keeps its name but something happens (effects or bookkeeping), and nothing
  is refused;
- ``!``  the command is refused: exactly one ``Reply`` carrying ``Refused``, state unchanged;
- a state name: the session moves there.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from actor_admin.session import (
    CLIENT_OUTDATED,
    CONNECTION_LOST,
    CONNECTION_REPLACED,
    LOGGED_OUT,
    NETWORK_ERROR,
    RESTART_REQUIRED,
    STATES,
    TEMPORARILY_BANNED,
    TIMER_BACKOFF,
    TIMER_BAN_EXPIRY,
    TIMER_CONFLICT_RETRY,
    TIMER_CONNECT_DEADLINE,
    TIMER_KEEPALIVE,
    TIMER_NAMES,
    TIMER_PAIRING_EXPIRY,
    TIMER_PAIRING_REQUEST,
    TIMER_SILENCE,
    Connected,
    CredsUpdated,
    Disconnected,
    Event,
    Freeze,
    KeepaliveRestored,
    KeepaliveTimeout,
    LinkFailed,
    Logout,
    MessageReceived,
    MessageSent,
    OwnershipChecked,
    PairingCodeFailed,
    PairingCodeIssued,
    PairSuccess,
    QrIssued,
    Refused,
    Reply,
    RequestPairingCode,
    RequestQr,
    Send,
    Start,
    StateName,
    Stop,
    Timer,
    Uninstall,
    step,
)

from ._session_driver import JID, PHONE, Driver, connected, just_restarted, showing_qr


def representative(name: StateName) -> Driver:
    """A session in state ``name``, reached through real events."""
    reach: dict[StateName, Callable[[], Driver]] = {
        "idle": Driver,
        "starting": lambda: _then(Driver(), RequestQr()),
        "qr": showing_qr,
        "pairing_code": lambda: _then(showing_qr(), RequestPairingCode(PHONE), PairingCodeIssued("ABCD-EFGH", 60.0)),
        "connecting": just_restarted,
        "connected": connected,
        "reconnecting": lambda: _then(connected(), Disconnected(CONNECTION_LOST)),
        "logged_out": lambda: _then(connected(), Disconnected(LOGGED_OUT)),
        "conflict": lambda: _then(connected(), Disconnected(CONNECTION_REPLACED)),
        "failed": lambda: _then(connected(), Disconnected(CLIENT_OUTDATED)),
        "frozen": lambda: _then(connected(), Freeze()),
        "uninstalled": lambda: _then(connected(), Uninstall()),
    }
    driver = reach[name]()
    assert driver.name == name
    return driver


def _then(driver: Driver, *events: Event) -> Driver:
    for event in events:
        driver(event, after=1)
    return driver


EVENTS: dict[str, Event] = {
    "start": Start(request_id=1),
    "request_qr": RequestQr(request_id=1),
    "request_pairing_code": RequestPairingCode("+7 900 123-45-67", request_id=1),
    "stop": Stop(request_id=1),
    "logout": Logout(request_id=1),
    "freeze": Freeze(request_id=1),
    "uninstall": Uninstall(request_id=1),
    "send": Send(PHONE, "hello", "key-1", request_id=1),
    "qr_issued": QrIssued("qr-2", 20.0, 2),
    "pairing_code_issued": PairingCodeIssued("WXYZ-1234", 60.0),
    "pair_success": PairSuccess(JID),
    "creds_updated": CredsUpdated(b"keys"),
    "connected": Connected(JID),
    "disconnected_515": Disconnected(RESTART_REQUIRED),
    "disconnected_440": Disconnected(CONNECTION_REPLACED),
    "disconnected_401": Disconnected(LOGGED_OUT),
    "disconnected_402": Disconnected(TEMPORARILY_BANNED, ban_expires_at=10_000_000.0),
    "disconnected_405": Disconnected(CLIENT_OUTDATED),
    "disconnected_408": Disconnected(CONNECTION_LOST),
    "disconnected_0": Disconnected(NETWORK_ERROR),
    "keepalive_timeout": KeepaliveTimeout(),
    "keepalive_restored": KeepaliveRestored(),
    "message_received": MessageReceived("wa-1", "79991112233", "hi", 5.0),
    "message_sent": MessageSent("key-1", "wa-2"),
    **{f"timer_{name}": Timer(name) for name in TIMER_NAMES},
    "ownership_true": OwnershipChecked(owned=True),
    "ownership_false": OwnershipChecked(owned=False),
    "link_failed": LinkFailed("dial failed"),
    "pairing_code_failed": PairingCodeFailed("refused"),
}

# Outcome codes: "-" nothing, "=" same state with effects, "!" refused, or the state moved to:
# ID idle, ST starting, QR qr, PC pairing_code, CN connecting, OK connected, RC reconnecting,
# LO logged_out, CF conflict, FA failed, FR frozen, UN uninstalled.
# fmt: off
TABLE: dict[str, str] = {
    #                                    ID ST QR PC CN OK RC LO CF FA FR UN
    "start":                            "=  =  =  =  =  =  CN =  CN CN CN ID",
    "request_qr":                       "ST =  =  =  =  =  =  ST !  CN !  !",
    "request_pairing_code":             "ST =  =  =  !  !  !  ST !  !  !  !",
    "stop":                             "=  ID ID ID ID ID ID =  =  =  =  =",
    "logout":                           "=  ID ID ID LO LO LO =  LO LO !  !",
    "freeze":                           "FR FR FR FR FR FR FR FR FR FR =  !",
    "uninstall":                        "UN UN UN UN UN UN UN UN UN UN UN =",
    "send":                             "!  !  !  !  !  =  !  !  !  !  !  !",
    "qr_issued":                        "-  QR =  =  -  -  -  -  -  -  -  -",
    "pairing_code_issued":              "-  -  -  =  -  -  -  -  -  -  -  -",
    "pair_success":                     "-  CN CN CN -  -  -  -  -  -  -  -",
    "creds_updated":                    "-  =  =  =  =  =  -  -  -  -  -  -",
    "connected":                        "-  OK OK OK OK -  -  -  -  -  -  -",
    "disconnected_515":                 "-  ST ST ST =  CN -  -  -  -  -  -",
    "disconnected_440":                 "-  CF CF CF CF CF -  -  -  -  -  -",
    # connecting is within 30 s of its 515: that 401 is the transient one.
    "disconnected_401":                 "-  LO LO LO RC LO -  -  -  -  -  -",
    "disconnected_402":                 "-  FA FA FA FA FA -  -  -  -  -  -",
    "disconnected_405":                 "-  FA FA FA FA FA -  -  -  -  -  -",
    "disconnected_408":                 "-  ID ID ID RC RC -  -  -  -  -  -",
    "disconnected_0":                   "-  ID ID ID RC RC -  -  -  -  -  -",
    "keepalive_timeout":                "-  -  -  -  -  =  -  -  -  -  -  -",
    "keepalive_restored":               "-  -  -  -  -  -  -  -  -  -  -  -",
    "message_received":                 "=  =  =  =  =  =  =  =  =  =  =  -",
    "message_sent":                     "=  =  =  =  =  =  =  =  =  =  =  =",
    f"timer_{TIMER_BACKOFF}":           "-  -  -  -  -  -  CN -  -  -  -  -",
    f"timer_{TIMER_CONNECT_DEADLINE}":  "-  ID ID ID RC -  -  -  -  -  -  -",
    f"timer_{TIMER_KEEPALIVE}":         "-  -  -  -  -  -  -  -  -  -  -  -",
    f"timer_{TIMER_SILENCE}":           "-  -  -  -  -  -  -  -  -  -  -  -",
    f"timer_{TIMER_CONFLICT_RETRY}":    "-  -  -  -  -  -  -  -  -  -  -  -",
    f"timer_{TIMER_BAN_EXPIRY}":        "-  -  -  -  -  -  -  -  -  -  -  -",
    f"timer_{TIMER_PAIRING_REQUEST}":   "-  -  -  -  -  -  -  -  -  -  -  -",
    # the QR on hold expired long ago, so the session waits for the next one
    f"timer_{TIMER_PAIRING_EXPIRY}":    "-  -  -  ST -  -  -  -  -  -  -  -",
    "ownership_true":                   "-  -  -  -  -  -  -  -  =  -  -  -",
    "ownership_false":                  "-  -  -  -  -  -  -  -  =  -  -  -",
    "link_failed":                      "-  ID ID ID RC RC -  -  -  -  -  -",
    "pairing_code_failed":              "-  -  -  -  -  -  -  -  -  -  -  -",
}
# fmt: on


_NAMES = dict(zip("ID ST QR PC CN OK RC LO CF FA FR UN".split(), STATES, strict=True))


def _row(kind: str) -> list[str]:
    return [_NAMES.get(cell, cell) for cell in TABLE[kind].split()]


def test_the_table_covers_every_event_kind_and_state() -> None:
    assert set(TABLE) == set(EVENTS)
    assert all(len(_row(kind)) == len(STATES) for kind in TABLE)


CASES = [
    pytest.param(state, kind, _row(kind)[i], id=f"{state}-{kind}") for kind in EVENTS for i, state in enumerate(STATES)
]


@pytest.mark.parametrize(("state_name", "kind", "expected"), CASES)
def test_outcome(state_name: StateName, kind: str, expected: str) -> None:
    driver = representative(state_name)
    before = driver.state
    # Timers fire long after every deadline of the representative states; other events a second on.
    now = driver.now + (5000.0 if kind.startswith("timer_") else 1.0)

    after, effects = step(before, EVENTS[kind], now)

    refused = [e for e in effects if isinstance(e, Reply) and isinstance(e.outcome, Refused)]
    if expected == "-":
        assert (after, effects) == (before, [])
    elif expected == "!":
        assert len(refused) == 1 and effects == refused and after == before
    elif expected == "=":
        assert after.name == before.name and not refused
        assert effects or after != before
    else:
        assert after.name == expected and not refused
