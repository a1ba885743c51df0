"""The outage detector on its own: a pure state machine, time given as an argument."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actor_admin.actors import OutageDetector, OutagePolicy
from actor_admin.actors._upstream import PROBE_BACKOFF

T0 = 1000.0


def outage(salons: range = range(1, 11)) -> OutageDetector:
    """A detector that saw every salon of ``salons`` lose its connection at T0."""
    d = OutageDetector()
    connected = len(salons)
    for salon in salons:
        connected -= 1
        d.connection_lost(salon, T0, still_connected=connected)
    assert d.state == "outage"
    return d


@pytest.mark.parametrize(
    ("lost", "still_connected", "state"),
    [
        (4, 0, "ok"),  # fewer than 5: separate faults, whatever the share
        (5, 5, "outage"),  # 5 of 10: half
        (5, 6, "ok"),  # 5 of 11: under half
        (10, 0, "outage"),
        (50, 940, "ok"),  # 50 of 990: a few salons, not WhatsApp
        (500, 500, "outage"),
    ],
)
def test_an_outage_is_many_and_half_of_the_connected_losing_it_within_the_window(
    lost: int, still_connected: int, state: str
) -> None:
    d = OutageDetector()
    for salon in range(lost):
        d.connection_lost(salon, T0 + salon * 0.001, still_connected=still_connected)
    assert d.state == state


def test_losses_spread_wider_than_the_window_are_separate_faults() -> None:
    d = OutageDetector()
    for salon in range(20):
        d.connection_lost(salon, T0 + salon * 3.0, still_connected=0)  # one every 3 s: ≤ 4 in 10 s
    assert d.state == "ok"


def test_the_same_salon_flapping_is_one_loss() -> None:
    d = OutageDetector()
    for _ in range(10):
        d.connection_lost(7, T0, still_connected=0)
    assert d.state == "ok"


def test_in_an_outage_only_one_probe_dials_per_cadence() -> None:
    d = outage()
    low, high = PROBE_BACKOFF.bounds(0)
    assert low <= d.next_probe_at - T0 <= high
    assert not any(d.may_dial(salon, T0 + 5) for salon in range(1, 11))  # before the first probe time
    first = d.next_probe_at
    assert d.may_dial(3, first) and d.probe == 3
    assert not d.may_dial(4, first + 1)  # one probe in flight at a time
    assert d.may_dial(3, first + 1)  # the probe itself may re-dial (e.g. after a 515)
    d.dial_failed(3, first + 2)
    assert d.probe is None and 3 in d.held
    low, high = PROBE_BACKOFF.bounds(1)
    assert low <= d.next_probe_at - (first + 2) <= high
    assert not d.may_dial(5, first + 3)
    assert d.may_dial(5, d.next_probe_at) and d.probes == 2


def test_a_connection_ends_the_outage_and_releases_every_held_salon() -> None:
    d = outage()
    for salon in range(1, 11):
        d.may_dial(salon, T0 + 5)
    d.may_dial(42, T0 + 6)  # a salon that was not connected before also waits
    probe_at = d.next_probe_at
    assert d.may_dial(4, probe_at)
    released = d.connected(4, probe_at + 1)
    assert released == [1, 2, 3, 5, 6, 7, 8, 9, 10, 42]
    assert (d.state, d.held, d.probe, d.since) == ("ok", set(), None, None)
    assert d.may_dial(1, probe_at + 2)  # dials are free again
    assert d.connected(1, probe_at + 3) == []  # nothing more to release


def test_a_stopped_probe_frees_the_probe_slot() -> None:
    d = outage()
    assert d.may_dial(2, d.next_probe_at)
    d.forget(2)
    assert d.probe is None and 2 not in d.held
    assert d.may_dial(3, d.next_probe_at)


def test_a_dial_failing_outside_an_outage_changes_nothing() -> None:
    d = OutageDetector()
    d.dial_failed(1, T0)
    assert d.state == "ok" and d.may_dial(1, T0)


def test_policy_numbers_are_validated() -> None:
    with pytest.raises(ValueError):
        OutagePolicy(min_share=0.0)
    with pytest.raises(ValueError):
        OutagePolicy(min_lost=0)


calls = st.lists(
    st.tuples(
        st.sampled_from(["lost", "dial", "failed", "connected", "forget"]),
        st.integers(1, 12),
        st.sampled_from([0.0, 0.5, 3.0, 30.0, 61.0, 300.0]),
    ),
    max_size=200,
)


@settings(max_examples=200, deadline=None)
@given(calls)
def test_never_more_than_one_probe_and_probes_respect_the_cadence(script: list[tuple[str, int, float]]) -> None:
    d = OutageDetector()
    now = T0
    connected: set[int] = set(range(1, 13))
    last_probe_at: float | None = None
    for kind, salon, gap in script:
        now += gap
        if kind == "lost" and salon in connected:
            connected.discard(salon)
            d.connection_lost(salon, now, still_connected=len(connected))
        elif kind == "dial":
            probing_before = d.probe
            in_outage = d.state == "outage"
            if d.may_dial(salon, now) and in_outage and probing_before is None:
                if last_probe_at is not None:
                    assert now - last_probe_at >= PROBE_BACKOFF.bounds(0)[0]
                last_probe_at = now
        elif kind == "failed":
            d.dial_failed(salon, now)
        elif kind == "connected":
            connected.add(salon)
            d.connected(salon, now)
            last_probe_at = None
        else:
            if d.probe == salon:
                last_probe_at = None  # the probe's actor stopped: the next may dial at once
            d.forget(salon)
        assert d.probe is None or d.state == "outage"
        assert (d.state == "outage") == (d.since is not None)
        if d.state == "ok":
            assert d.held == set()
