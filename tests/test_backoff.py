"""Backoff is pure: delays from the attempt number and a caller-drawn jitter fraction."""

from __future__ import annotations

import random

import pytest

from actor_admin.backoff import Backoff


def test_base_delay_starts_at_initial_and_doubles() -> None:
    backoff = Backoff(initial_s=1.0, factor=2.0, max_s=60.0)
    assert [backoff.base_delay(n) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]


def test_base_delay_is_capped_at_max() -> None:
    backoff = Backoff(initial_s=1.0, factor=2.0, max_s=60.0)
    assert backoff.base_delay(6) == 60.0
    assert backoff.base_delay(50) == 60.0


def test_huge_attempt_stays_at_the_cap_without_overflow() -> None:
    assert Backoff(max_s=60.0).base_delay(100_000) == 60.0


def test_jitter_of_a_midpoint_fraction_is_no_jitter() -> None:
    backoff = Backoff(jitter=0.2)
    assert backoff.delay(3, 0.5) == backoff.base_delay(3)


def test_jitter_extremes_are_plus_minus_jitter() -> None:
    backoff = Backoff(jitter=0.2)
    low, high = backoff.bounds(2)
    assert backoff.delay(2, 0.0) == pytest.approx(low)
    assert low == pytest.approx(4.0 * 0.8)
    assert high == pytest.approx(4.0 * 1.2)
    assert backoff.delay(2, 1.0 - 1e-12) == pytest.approx(high)


def test_jittered_delays_stay_within_bounds_and_vary() -> None:
    backoff = Backoff()
    rng = random.Random(7)
    delays = [backoff.delay(4, rng.random()) for _ in range(200)]
    low, high = backoff.bounds(4)
    assert all(low <= d <= high for d in delays)
    assert len(set(delays)) > 100


def test_jitter_applies_on_top_of_the_cap() -> None:
    backoff = Backoff(max_s=60.0, jitter=0.2)
    assert backoff.bounds(20) == pytest.approx((48.0, 72.0))


def test_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff().base_delay(-1)


@pytest.mark.parametrize("jitter", [-0.1, 1.5])
def test_jitter_outside_unit_interval_is_refused(jitter: float) -> None:
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=jitter)
