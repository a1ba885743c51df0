"""The per-reason policy, one behaviour per test, as sequences a real session goes through."""

from __future__ import annotations

import attrs
import pytest

from actor_admin.session import (
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
    QR_BATCH_SIZE,
    RESTART_REQUIRED,
    SLOW_RECONNECT_BACKOFF,
    TEMPORARILY_BANNED,
    TIMER_BACKOFF,
    TIMER_BAN_EXPIRY,
    TIMER_CONFLICT_RETRY,
    TIMER_CONNECT_DEADLINE,
    TIMER_KEEPALIVE,
    TIMER_SILENCE,
    UNAVAILABLE_SERVICE,
    UNLINKED_REASONS,
    WHATSAPP_UNREACHABLE,
    Alert,
    CheckOwnership,
    Connect,
    Connected,
    CredsUpdated,
    DeleteCredentials,
    Disconnect,
    Disconnected,
    KeepaliveRestored,
    KeepaliveTimeout,
    LinkFailed,
    LogEvent,
    LogoutDevice,
    MessageReceived,
    OwnershipChecked,
    PairSuccess,
    PersistConnection,
    PersistUnlinked,
    RequestQr,
    SessionPolicy,
    SetTimer,
    Start,
    StoreCredentials,
    Timer,
    qr_ttl_s,
)
from actor_admin.session._policy import RECONNECT_BACKOFF, jitter_fraction

from ._session_driver import JID, PHONE, Driver, connected, frames, just_restarted, of_type, refusals, showing_qr

# --- 515 restart required ---------------------------------------------------------------------


def test_credentials_from_the_scan_are_stored() -> None:
    d = showing_qr()
    d(PairSuccess(JID))
    effects = d(CredsUpdated(b"device-keys"))
    assert of_type(effects, StoreCredentials) == [StoreCredentials(b"device-keys", account=PHONE)]
    assert d.state.has_credentials


def test_515_reconnects_at_once_with_the_new_credentials() -> None:
    d = showing_qr()
    d(PairSuccess(JID))
    d(CredsUpdated(b"device-keys"))
    effects = d(Disconnected(RESTART_REQUIRED))
    assert of_type(effects, Connect) == [Connect(with_credentials=True)]
    assert TIMER_BACKOFF not in [t.name for t in of_type(effects, SetTimer)]
    assert d.name == "connecting"


def test_connected_after_515_persists_the_phone_as_digits() -> None:
    d = just_restarted()
    effects = d(Connected(JID))
    assert d.name == "connected"
    assert of_type(effects, PersistConnection) == [PersistConnection(PHONE)]
    assert {"type": "connected", "phone": PHONE} in frames(effects)
    assert {"type": "state", "state": "connected", "phone": PHONE} in frames(effects)


def test_401_within_grace_after_515_is_retried_once() -> None:
    d = just_restarted()
    effects = d(Disconnected(LOGGED_OUT), after=5)
    assert d.name == "reconnecting"
    assert not of_type(effects, DeleteCredentials)
    assert d.state.has_credentials


def test_the_retried_401_tells_viewers_the_device_was_reported_unlinked() -> None:
    d = just_restarted()
    effects = d(Disconnected(LOGGED_OUT), after=5)
    assert {"type": "state", "state": "reconnecting", "phone": PHONE, "reason": "logged_out"} in frames(effects)


def test_second_401_after_515_is_final() -> None:
    d = just_restarted()
    d(Disconnected(LOGGED_OUT), after=5)
    d.fire(TIMER_BACKOFF)
    effects = d(Disconnected(LOGGED_OUT), after=1)
    assert d.name == "logged_out"
    assert of_type(effects, DeleteCredentials) == [DeleteCredentials()]


def test_401_after_the_grace_window_is_final() -> None:
    d = just_restarted()
    d(Connected(JID), after=1)
    effects = d(Disconnected(LOGGED_OUT), after=31)
    assert d.name == "logged_out"
    assert of_type(effects, DeleteCredentials) == [DeleteCredentials()]


# --- final reasons --------------------------------------------------------------------------


@pytest.mark.parametrize("reason", [LOGGED_OUT, FORBIDDEN, BANNED, MULTIDEVICE_MISMATCH])
def test_unlinking_reasons_delete_credentials_and_mark_disconnected(reason: int) -> None:
    d = connected()
    effects = d(Disconnected(reason))
    assert d.name == "logged_out"
    assert of_type(effects, DeleteCredentials) == [DeleteCredentials()]
    assert len(of_type(effects, PersistUnlinked)) == 1
    assert not of_type(effects, Connect)
    assert not d.state.has_credentials and d.state.phone is None


def test_the_unlinking_reasons_transports_check_are_the_policys() -> None:
    # neonize skips its last credential snapshot after exactly these codes.
    assert {LOGGED_OUT, FORBIDDEN, BANNED, MULTIDEVICE_MISMATCH} == UNLINKED_REASONS


def test_whatsapp_qr_batch_lasts_160_s_and_the_link_guard_outlasts_it() -> None:
    assert [qr_ttl_s(seq) for seq in range(1, QR_BATCH_SIZE + 1)] == [60.0, 20.0, 20.0, 20.0, 20.0, 20.0]
    assert sum(qr_ttl_s(seq) for seq in range(1, QR_BATCH_SIZE + 1)) == QR_BATCH_S == 160.0
    assert SessionPolicy().qr_link_timeout_s > QR_BATCH_S


def test_client_outdated_fails_without_retrying() -> None:
    d = connected()
    effects = d(Disconnected(CLIENT_OUTDATED))
    assert (d.name, d.state.reason) == ("failed", "client_outdated")
    assert of_type(effects, Alert)
    assert not of_type(effects, Connect) and not of_type(effects, SetTimer)


def test_client_outdated_is_explained_to_viewers() -> None:
    d = connected()
    effects = d(Disconnected(CLIENT_OUTDATED))
    codes = [f.get("code") for f in frames(effects) if f["type"] == "error"]
    assert codes == ["client_outdated"]


# --- 440 connection replaced ------------------------------------------------------------------


def test_440_stops_and_checks_ownership_instead_of_reconnecting() -> None:
    d = connected()
    effects = d(Disconnected(CONNECTION_REPLACED))
    assert d.name == "conflict"
    assert of_type(effects, CheckOwnership) == [CheckOwnership()]
    assert not of_type(effects, Connect)


def test_conflict_retries_once_after_ownership_is_confirmed() -> None:
    d = connected()
    d(Disconnected(CONNECTION_REPLACED))
    effects = d(OwnershipChecked(owned=True), after=1)
    assert of_type(effects, SetTimer) == [SetTimer(TIMER_CONFLICT_RETRY, d.now + 60.0)]
    effects = d.fire(TIMER_CONFLICT_RETRY)
    assert of_type(effects, Connect) == [Connect(with_credentials=True)]


def test_conflict_after_the_retry_stays_stopped_and_alerts() -> None:
    d = connected()
    d(Disconnected(CONNECTION_REPLACED))
    d(OwnershipChecked(owned=True), after=1)
    d.fire(TIMER_CONFLICT_RETRY)
    d(Connected(JID), after=1)
    effects = d(Disconnected(CONNECTION_REPLACED), after=5)
    assert d.name == "conflict"
    assert of_type(effects, Alert)
    assert not of_type(effects, CheckOwnership)
    assert not of_type(d(OwnershipChecked(owned=True), after=1), SetTimer)


def test_conflict_without_ownership_schedules_no_retry() -> None:
    d = connected()
    d(Disconnected(CONNECTION_REPLACED))
    effects = d(OwnershipChecked(owned=False), after=1)
    assert not of_type(effects, SetTimer)
    assert d.state.timers == {}


def test_viewers_cannot_restart_a_conflict() -> None:
    d = connected()
    d(Disconnected(CONNECTION_REPLACED))
    assert refusals(d(RequestQr(request_id=3))) == ["conflict"]


def test_operator_start_clears_conflict_and_its_spent_retry() -> None:
    d = connected()
    d(Disconnected(CONNECTION_REPLACED))
    d(OwnershipChecked(owned=True))
    d.fire(TIMER_CONFLICT_RETRY)
    d(Disconnected(CONNECTION_REPLACED), after=1)
    effects = d(Start(request_id=1), after=1)
    assert of_type(effects, Connect) == [Connect(with_credentials=True)]
    assert not d.state.conflict_retry_used


# --- transient reasons and back-off -------------------------------------------------------------


def _no_jitter() -> SessionPolicy:
    return SessionPolicy(backoff=attrs.evolve(SessionPolicy().backoff, jitter=0.0), max_reconnects=100)


def test_backoff_delays_double_from_5_s_and_cap_at_60_s() -> None:
    d = connected(_no_jitter())
    delays = []
    for _ in range(7):
        effects = d(Disconnected(CONNECTION_LOST), after=1)
        (timer,) = of_type(effects, SetTimer)
        delays.append(timer.at - d.now)
        d.fire(TIMER_BACKOFF)
    assert delays == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0]


@pytest.mark.parametrize("reason", [CONNECTION_LOST, CONNECTION_CLOSED, 500, UNAVAILABLE_SERVICE, NETWORK_ERROR, 499])
def test_transient_reasons_back_off(reason: int) -> None:
    d = connected()
    effects = d(Disconnected(reason))
    assert d.name == "reconnecting"
    assert [t.name for t in of_type(effects, SetTimer)] == [TIMER_BACKOFF]
    assert not of_type(effects, Connect)


@pytest.mark.parametrize("seed", range(20))
def test_backoff_jitter_stays_within_20_percent(seed: int) -> None:
    policy = SessionPolicy(max_reconnects=100)
    d = connected(policy)
    d.state = attrs.evolve(d.state, jitter_seed=seed)
    for failures in range(1, 7):
        effects = d(Disconnected(NETWORK_ERROR), after=1)
        (timer,) = of_type(effects, SetTimer)
        low, high = policy.backoff.bounds(failures - 1)
        assert low <= timer.at - d.now <= high
        d.fire(TIMER_BACKOFF)


def test_jitter_differs_between_sessions() -> None:
    assert len({round(jitter_fraction(seed, 1), 9) for seed in range(50)}) > 40


def test_failures_reset_once_connected() -> None:
    d = connected(_no_jitter())
    d(Disconnected(CONNECTION_LOST))
    d.fire(TIMER_BACKOFF)
    d(Disconnected(CONNECTION_LOST), after=1)
    d.fire(TIMER_BACKOFF)
    d(Connected(JID), after=1)
    effects = d(Disconnected(CONNECTION_LOST), after=1)
    (timer,) = of_type(effects, SetTimer)
    assert timer.at - d.now == 5.0


def _spend_fast_budget(d: Driver) -> None:
    """Eight fast reconnects after network errors: the fast budget of the default policy."""
    d.now += 600  # the pairing's 515 reconnect has left the window
    for _ in range(8):
        d(Disconnected(NETWORK_ERROR), after=1)
        assert (d.name, d.state.reason) == ("reconnecting", "network_error")
        d.fire(TIMER_BACKOFF)


def test_after_the_fast_budget_a_transient_cause_goes_to_the_slow_cadence_not_failed() -> None:
    d = connected(SessionPolicy(max_reconnects=8, reconnect_window_s=600))
    _spend_fast_budget(d)
    effects = d(Disconnected(NETWORK_ERROR), after=1)
    assert (d.name, d.state.reason) == ("reconnecting", WHATSAPP_UNREACHABLE)
    (timer,) = of_type(effects, SetTimer)
    low, high = SLOW_RECONNECT_BACKOFF.bounds(0)
    assert low <= timer.at - d.now <= high
    assert [a.code for a in of_type(effects, Alert)] == [WHATSAPP_UNREACHABLE]  # operators hear it once
    # The page is told at once that WhatsApp is unreachable, not "back in a few seconds".
    assert {"type": "state", "state": "reconnecting", "phone": PHONE, "reason": WHATSAPP_UNREACHABLE} in frames(effects)


def test_slow_cadence_lasts_forever_with_capped_jittered_delays_and_one_alert() -> None:
    d = connected()
    _spend_fast_budget(d)
    delays, alerts = [], 0
    for _ in range(200):  # far longer than any outage: about 13 hours
        effects = d(Disconnected(NETWORK_ERROR), after=1)
        alerts += len(of_type(effects, Alert))
        assert (d.name, d.state.reason) == ("reconnecting", WHATSAPP_UNREACHABLE)
        delays.append(d.state.timers[TIMER_BACKOFF] - d.now)
        d.fire(TIMER_BACKOFF)
        assert d.name == "connecting"
    assert alerts == 1
    assert 45.0 <= min(delays) and max(delays) <= 300.0  # every 45 s to 5 min
    assert SLOW_RECONNECT_BACKOFF.bounds(10) == (180.0, 300.0)
    assert len(set(delays[5:])) > 100  # jittered, not one fixed beat
    assert len(d.state.reconnects) <= 600 / 45 + 1  # the state record stays bounded


def test_a_connection_after_the_slow_cadence_starts_over_with_fast_reconnects() -> None:
    d = connected()
    _spend_fast_budget(d)
    d(Disconnected(NETWORK_ERROR), after=1)
    d.fire(TIMER_BACKOFF)
    d(Connected(JID), after=1)
    assert (d.name, d.state.slow_reconnects, d.state.failures) == ("connected", 0, 0)
    d.now += 600  # the fast reconnects have left the window
    effects = d(Disconnected(NETWORK_ERROR), after=1)
    assert (d.name, d.state.reason) == ("reconnecting", "network_error")
    (timer,) = of_type(effects, SetTimer)
    assert RECONNECT_BACKOFF.bounds(0)[0] <= timer.at - d.now <= RECONNECT_BACKOFF.bounds(0)[1]


def test_flapping_connection_never_reconnects_fast_more_than_the_budget_per_window() -> None:
    d = connected(SessionPolicy(max_reconnects=8, reconnect_window_s=600))
    d.now += 600
    fast_starts: list[float] = []
    for _ in range(40):
        d(Disconnected(CONNECTION_CLOSED), after=10)
        assert d.name == "reconnecting"
        if d.state.reason != WHATSAPP_UNREACHABLE:
            fast_starts.append(d.now)
        d.fire(TIMER_BACKOFF)
        d(Connected(JID), after=1)
    assert d.name == "connected"
    for t in fast_starts:
        assert sum(1 for u in fast_starts if t <= u < t + 600) <= 8


def test_a_held_back_dial_goes_straight_to_the_slow_cadence() -> None:
    """The node knows WhatsApp is unreachable (an outage behind one probe): no fast retries."""
    d = connected()
    d(Disconnected(NETWORK_ERROR), after=1)
    d.fire(TIMER_BACKOFF)
    effects = d(LinkFailed("held back", upstream_down=True))
    assert (d.name, d.state.reason, d.state.slow_reconnects) == ("reconnecting", WHATSAPP_UNREACHABLE, 1)
    assert SLOW_RECONNECT_BACKOFF.bounds(0)[0] <= d.state.timers[TIMER_BACKOFF] - d.now
    assert not of_type(effects, Connect)
    # The node reported the outage once for all its salons: no alert, no "disconnected" per salon.
    assert not of_type(effects, Alert)
    assert [e.type for e in of_type(effects, LogEvent)] == ["reconnect_slowed"]


@pytest.mark.parametrize(
    ("event", "state", "reason"),
    [
        (Disconnected(LOGGED_OUT), "logged_out", "logged_out"),
        (Disconnected(FORBIDDEN), "logged_out", "forbidden"),
        (Disconnected(TEMPORARILY_BANNED, ban_expires_at=1e9), "failed", "temporarily_banned"),
        (Disconnected(CLIENT_OUTDATED), "failed", "client_outdated"),
    ],
)
def test_permanent_causes_on_the_slow_cadence_stop_retrying(event: Disconnected, state: str, reason: str) -> None:
    d = connected()
    _spend_fast_budget(d)
    d(Disconnected(NETWORK_ERROR), after=1)
    d.fire(TIMER_BACKOFF)  # a slow attempt dials …
    effects = d(event, after=1)  # … and WhatsApp answers with a permanent cause
    assert (d.name, d.state.reason) == (state, reason)
    assert TIMER_BACKOFF not in d.state.timers and not of_type(effects, Connect)


def test_reconnects_older_than_the_window_are_forgotten() -> None:
    d = connected(SessionPolicy(max_reconnects=3, reconnect_window_s=600))
    for _ in range(10):
        d(Disconnected(CONNECTION_CLOSED), after=300)
        d.fire(TIMER_BACKOFF)
        d(Connected(JID), after=1)
    assert d.name == "connected"


def test_link_that_fails_to_open_backs_off() -> None:
    d = connected()
    d(Disconnected(NETWORK_ERROR))
    d.fire(TIMER_BACKOFF)
    effects = d(LinkFailed("no such host"), after=1)
    assert d.name == "reconnecting"
    assert [t.name for t in of_type(effects, SetTimer)] == [TIMER_BACKOFF]


def test_hung_connect_is_abandoned_and_retried() -> None:
    d = connected()
    d(Disconnected(NETWORK_ERROR))
    d.fire(TIMER_BACKOFF)
    effects = d.fire(TIMER_CONNECT_DEADLINE)
    assert isinstance(effects[0], Disconnect)
    assert d.name == "reconnecting"


# --- 402 temporarily banned -------------------------------------------------------------------


def test_ban_waits_for_its_expiry_then_reconnects() -> None:
    d = connected()
    expiry = d.now + 1800
    effects = d(Disconnected(TEMPORARILY_BANNED, ban_expires_at=expiry))
    assert (d.name, d.state.reason) == ("failed", "temporarily_banned")
    assert SetTimer(TIMER_BAN_EXPIRY, expiry) in effects
    assert not of_type(effects, Connect)
    effects = d.fire(TIMER_BAN_EXPIRY)
    assert of_type(effects, Connect) == [Connect(with_credentials=True)]


def test_ban_expiry_is_shown_to_viewers() -> None:
    d = connected()
    effects = d(Disconnected(TEMPORARILY_BANNED, ban_expires_at=d.now + 1800))
    (error,) = [f for f in frames(effects) if f["type"] == "error"]
    assert error["code"] == "temporarily_banned" and "30 min" in str(error["message"])


def test_ban_without_expiry_lasts_the_fallback() -> None:
    d = connected(SessionPolicy(ban_fallback_s=900))
    effects = d(Disconnected(TEMPORARILY_BANNED))
    assert SetTimer(TIMER_BAN_EXPIRY, d.now + 900) in effects


def test_banned_session_refuses_viewers_and_restarts() -> None:
    d = connected()
    d(Disconnected(TEMPORARILY_BANNED, ban_expires_at=d.now + 600))
    assert refusals(d(RequestQr(request_id=1), after=1)) == ["temporarily_banned"]
    assert refusals(d(Start(request_id=2), after=1)) == ["temporarily_banned"]


# --- the liveness watchdog --------------------------------------------------------------------


def test_missed_keepalives_reconnect_after_the_grace() -> None:
    d = connected()
    effects = d(KeepaliveTimeout())
    assert SetTimer(TIMER_KEEPALIVE, d.now + 30.0) in effects
    effects = d.fire(TIMER_KEEPALIVE)
    kinds = [type(e) for e in effects if isinstance(e, Disconnect | Connect | LogoutDevice)]
    assert kinds == [Disconnect, Connect]
    assert d.name == "connecting"


def test_restored_keepalives_cancel_the_watchdog() -> None:
    d = connected()
    d(KeepaliveTimeout())
    d(KeepaliveRestored(), after=10)
    assert d.state.timers == {}
    assert d(Timer(TIMER_KEEPALIVE), after=30) == []
    assert d.name == "connected"


def test_silence_watchdog_is_reset_by_activity_when_enabled() -> None:
    d = connected(SessionPolicy(silence_timeout_s=120))
    d(Disconnected(NETWORK_ERROR))
    d.fire(TIMER_BACKOFF)
    d(Connected(JID), after=1)
    first_deadline = d.state.timers[TIMER_SILENCE]
    d(MessageReceived("wa-1", "79990000000", "hi", 0.0), after=100)
    # the old deadline passes while activity moved it: that firing is stale
    assert d(Timer(TIMER_SILENCE), after=first_deadline - d.now) == []
    effects = d.fire(TIMER_SILENCE)
    assert of_type(effects, Connect) == [Connect(with_credentials=True)]
