"""Liveness judged on the observer's own clock, and a node's own lease — pure, time given as numbers."""

from __future__ import annotations

import pytest

from actor_admin.cluster import NodeLease, Observer, OwnershipTimings
from actor_admin.store import NodeRef

from ._ownership_model import record

T = OwnershipTimings(ttl_s=10.0, heartbeat_interval_s=2.0, clock_margin=0.1, forget_after_s=30.0)


def _observer() -> Observer:
    return Observer("me", T)


# --- the Observer ---------------------------------------------------------------------------------


def test_a_node_is_dead_only_after_its_heartbeat_stayed_unchanged_for_the_ttl() -> None:
    observer = _observer()
    for now in (0.0, 2.0, 4.0, 6.0, 8.0, 9.99):
        verdict = observer.observe(now, [record("me", int(now) + 1), record("x", 5)])
        assert verdict.dead == {} and set(verdict.live) == {"me", "x"}
    verdict = observer.observe(10.0, [record("me", 20), record("x", 5)])
    assert verdict.dead == {"x": NodeRef("x", "i", 5)}
    assert set(verdict.live) == {"me"}


def test_a_node_that_keeps_beating_is_never_dead() -> None:
    observer = _observer()
    for step in range(100):
        verdict = observer.observe(step * 2.0, [record("me", step), record("x", step)])
        assert verdict.dead == {}


def test_one_beat_restarts_the_window() -> None:
    observer = _observer()
    observer.observe(0.0, [record("x", 5)])
    observer.observe(9.0, [record("x", 6)])
    assert observer.observe(18.0, [record("x", 6)]).dead == {}
    assert observer.observe(19.0, [record("x", 6)]).dead == {"x": NodeRef("x", "i", 6)}


def test_the_window_starts_at_the_first_sighting_not_at_the_rows_own_time() -> None:
    # A node that has watched nothing yet judges nobody: silence it did not see does not count.
    observer = _observer()
    assert observer.observe(1000.0, [record("x", 5)]).dead == {}
    assert observer.observe(1009.0, [record("x", 5)]).dead == {}
    assert "x" in observer.observe(1010.0, [record("x", 5)]).dead


def test_a_failed_heartbeat_of_the_observer_restarts_every_window() -> None:
    # A PostgreSQL outage: nobody could renew, so nobody may be judged by it.
    observer = _observer()
    observer.observe(0.0, [record("x", 5), record("y", 7)])
    observer.heartbeat_failed()
    assert observer.observe(30.0, [record("x", 5), record("y", 7)]).dead == {}
    assert observer.observe(39.0, [record("x", 5), record("y", 7)]).dead == {}
    assert set(observer.observe(40.0, [record("x", 5), record("y", 7)]).dead) == {"x", "y"}


def test_a_new_incarnation_of_a_node_id_is_a_new_sighting() -> None:
    observer = _observer()
    observer.observe(0.0, [record("x", 5, incarnation="old")])
    assert observer.observe(12.0, [record("x", 5, incarnation="new")]).dead == {}


def test_the_observer_itself_is_always_live_and_draining_nodes_are_live_but_not_placeable() -> None:
    observer = _observer()
    observer.observe(0.0, [record("me", 1), record("d", 1, draining=True)])
    verdict = observer.observe(5.0, [record("me", 1), record("d", 2, draining=True)])
    assert verdict.live == {"me": False, "d": True}
    assert verdict.placeable == {"me"}
    assert observer.observe(50.0, []).live == {"me": False}


def test_a_vanished_row_is_forgotten_and_a_long_dead_node_becomes_forgettable() -> None:
    observer = _observer()
    observer.observe(0.0, [record("x", 5), record("y", 1)])
    assert observer.observe(20.0, [record("x", 5)]).forgettable == frozenset()
    verdict = observer.observe(30.0, [record("x", 5), record("y", 1)])
    assert verdict.forgettable == {"x"} and set(verdict.dead) == {"x"}  # y reappeared: a new sighting


# --- the node's own lease -------------------------------------------------------------------------


def test_the_lease_lasts_ttl_less_the_margin_from_when_the_heartbeat_was_sent() -> None:
    lease = NodeLease(T)
    assert not lease.valid(0.0) and lease.valid_until() is None
    assert lease.renewed(sent_at=100.0, received_at=103.0, owned_read=True)
    assert lease.valid_until() == pytest.approx(109.0)
    assert lease.valid(108.99) and not lease.valid(109.0)


def test_continuous_renewals_need_no_ownership_read() -> None:
    lease = NodeLease(T)
    assert lease.renewed(0.0, 0.1, owned_read=True)
    assert lease.renewed(2.0, 2.1, owned_read=False)
    assert lease.renewed(4.0, 10.9, owned_read=False)  # a slow answer, still within 2.0 + 9.0
    assert lease.valid_until() == pytest.approx(13.0)


def test_after_a_gap_only_a_renewal_that_read_what_the_node_owns_counts() -> None:
    # Paused, or PostgreSQL away: salons may have been taken meanwhile.
    lease = NodeLease(T)
    assert not lease.renewed(0.0, 0.1, owned_read=False)  # the first: nothing is known before it
    assert lease.renewed(0.5, 0.6, owned_read=True)
    assert not lease.renewed(30.0, 30.1, owned_read=False)
    assert not lease.valid(30.2)
    assert lease.renewed(32.0, 32.1, owned_read=True)
    assert lease.valid(32.2)


def test_a_late_answer_never_moves_the_lease_back() -> None:
    lease = NodeLease(T)
    lease.renewed(10.0, 10.1, owned_read=True)
    lease.renewed(8.0, 10.2, owned_read=True)  # an older request answered last
    assert lease.valid_until() == pytest.approx(19.0)


def test_a_lost_lease_is_invalid_until_renewed() -> None:
    lease = NodeLease(T)
    lease.renewed(0.0, 0.1, owned_read=True)
    lease.lost()
    assert not lease.valid(0.2)


@pytest.mark.parametrize(
    "overrides",
    [
        {"ttl_s": 0.0},
        {"heartbeat_interval_s": 4.0},  # fewer than three renewals per lease
        {"clock_margin": 0.5},
        {"forget_after_s": 5.0},
        {"handovers_per_round": 0},
    ],
)
def test_timings_that_would_break_the_protocol_are_refused(overrides: dict[str, float]) -> None:
    values: dict[str, float] = {"ttl_s": 10.0, "heartbeat_interval_s": 2.0, "forget_after_s": 30.0}
    values.update(overrides)
    with pytest.raises(ValueError):
        OwnershipTimings(**values)  # type: ignore[arg-type]


def test_default_timings_notice_a_death_within_the_ttl_plus_two_seconds() -> None:
    default = OwnershipTimings()
    assert default.ttl_s + 2 * default.heartbeat_interval_s <= default.ttl_s + 2.0
