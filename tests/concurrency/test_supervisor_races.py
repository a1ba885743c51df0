"""The supervisor under many interleavings: every test runs once per schedule seed
(``--schedule-seeds``), all on virtual time."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
import trio
import trio.testing

from actor_admin.runtime import (
    ActorFailed,
    ActorState,
    AskTimeout,
    Backoff,
    Mailbox,
    MailboxFull,
    Request,
    SupervisorPolicy,
    open_supervisor,
)
from tests.runtime._probe import Probe

# Spec numbers: first delay 1 s, doubling, capped at 60 s, ±20 %.
DOCUMENTED_BACKOFF = Backoff(initial_s=1.0, factor=2.0, max_s=60.0, jitter=0.2)
NO_JITTER = Backoff(initial_s=1.0, factor=2.0, max_s=60.0, jitter=0.0)


async def _settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


def _delays(starts: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(starts)]


async def test_a_thousand_concurrent_ensures_start_one_actor(
    schedule_seed: int, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe()
    refs: list[Any] = []
    async with open_supervisor(probe.factory) as supervisor:

        async def ensure() -> None:
            refs.append(await supervisor.ensure("k"))

        async with trio.open_nursery() as nursery:
            for _ in range(1000):
                nursery.start_soon(ensure)
        assert len(probe.starts["k"]) == 1
        assert len({id(ref) for ref in refs}) == 1
        assert all(ref.state is ActorState.RUNNING for ref in refs)


async def test_concurrent_ensures_over_several_keys_start_one_actor_each(
    schedule_seed: int, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe()
    async with open_supervisor(probe.factory) as supervisor, trio.open_nursery() as nursery:
        for n in range(300):
            nursery.start_soon(supervisor.ensure, n % 7)
    assert {key: len(times) for key, times in probe.starts.items()} == {key: 1 for key in range(7)}


async def test_back_off_delays_double_from_one_second_up_to_the_cap(
    schedule_seed: int, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe()
    probe.crash_on_start["k"] = 9
    policy = SupervisorPolicy(backoff=NO_JITTER, intensity_max_restarts=100)
    async with open_supervisor(probe.factory, policy=policy) as supervisor:
        await supervisor.ensure("k")
        await trio.sleep(1000)
    assert _delays(probe.starts["k"]) == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


async def test_back_off_jitter_stays_within_twenty_percent_and_uses_the_injected_random(
    schedule_seed: int, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe()
    probe.crash_on_start["k"] = 9
    policy = SupervisorPolicy(backoff=DOCUMENTED_BACKOFF, intensity_max_restarts=100)
    async with open_supervisor(probe.factory, policy=policy, random=random.Random(schedule_seed).random) as supervisor:
        await supervisor.ensure("k")
        await trio.sleep(1000)
    observed = _delays(probe.starts["k"])
    replay = random.Random(schedule_seed).random
    assert observed == pytest.approx([DOCUMENTED_BACKOFF.delay(n, replay()) for n in range(9)])
    for n, delay in enumerate(observed):
        base = min(60.0, 2.0**n)
        assert 0.8 * base <= delay <= 1.2 * base


@pytest.mark.parametrize(("stable_for", "expected_delay"), [(60.0, 1.0), (59.0, 8.0)])
async def test_back_off_resets_only_after_a_stable_minute(
    schedule_seed: int, autojump_clock: trio.abc.Clock, stable_for: float, expected_delay: float
) -> None:
    probe = Probe()
    probe.crash_on_start["k"] = 3  # delays 1, 2, 4: the next would be 8
    async with open_supervisor(probe.factory, policy=SupervisorPolicy(backoff=NO_JITTER)) as supervisor:
        ref = await supervisor.ensure("k")
        await trio.sleep(7)
        await _settle()
        assert ref.state is ActorState.RUNNING
        await trio.sleep(stable_for)
        await ref.send("crash")
        await _settle()
        crashed_at = trio.current_time()
        await trio.sleep(100)
    assert probe.starts["k"][-1] - crashed_at == expected_delay


async def test_more_than_ten_crashes_in_ten_minutes_fail_the_key_until_restart(
    schedule_seed: int, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe()
    probe.crash_on_start["k"] = 11
    async with open_supervisor(probe.factory, policy=SupervisorPolicy(backoff=NO_JITTER)) as supervisor:
        ref = await supervisor.ensure("k")
        await trio.sleep(250)  # crashes at 0, 1, 3, 7, 15, 31, 63, 123, 183, 243
        assert ref.state is ActorState.BACKING_OFF
        await trio.sleep(3600)  # the 11th at 303
        assert ref.state is ActorState.FAILED
        assert len(probe.starts["k"]) == 11
        assert ref.statistics().last_error is not None
        assert ref.statistics().last_error.type == "Crash"
        with pytest.raises(ActorFailed):
            await ref.send("hello")

        restarted = await supervisor.restart("k")
        assert restarted is ref
        assert ref.state is ActorState.RUNNING
        # The crash history was cleared: the next crash backs off from the first delay again.
        await ref.send("crash")
        await _settle()
        crashed_at = trio.current_time()
        await trio.sleep(10)
        assert probe.starts["k"][-1] - crashed_at == 1.0


async def test_crashes_spread_wider_than_the_window_never_fail_the_key(
    schedule_seed: int, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe()
    policy = SupervisorPolicy(backoff=NO_JITTER, intensity_max_restarts=2, intensity_window_s=100.0)
    async with open_supervisor(probe.factory, policy=policy) as supervisor:
        ref = await supervisor.ensure("k")
        for _ in range(6):
            await ref.send("crash")
            await trio.sleep(60)  # back-off, then a run long enough to push old crashes out
        assert ref.state is ActorState.RUNNING
        assert ref.statistics().restarts == 6


async def test_stop_cancels_an_actor_that_ignores_it_when_the_grace_passes(
    schedule_seed: int, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe(ignore_stop={"k"})
    async with open_supervisor(probe.factory) as supervisor:
        await supervisor.ensure("k")
        start = trio.current_time()
        await supervisor.stop("k", grace=5)
        assert trio.current_time() - start == 5
        assert probe.cancelled["k"] == 1
        assert probe.live["k"] == 0
        assert supervisor.get("k") is None


async def test_stop_of_a_cooperative_actor_returns_before_the_grace(
    schedule_seed: int, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe()
    async with open_supervisor(probe.factory) as supervisor:
        ref = await supervisor.ensure("k")
        for n in range(3):
            await ref.send(n)
        start = trio.current_time()
        await supervisor.stop("k", grace=5)
        assert trio.current_time() == start
        assert probe.received["k"] == [0, 1, 2]  # queued messages first, then the stop
        assert probe.clean_stops["k"] == 1


async def test_mailbox_backpressure_bounds_the_queue_and_keeps_order(
    schedule_seed: int, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe()
    policy = SupervisorPolicy(mailbox_capacity=4)
    async with open_supervisor(probe.factory, policy=policy) as supervisor:
        ref = await supervisor.ensure("k")
        await ref.send(("sleep", 10))
        await _settle()
        sent: list[int] = []

        async def producer() -> None:
            for n in range(10):
                await ref.send(n)
                sent.append(n)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            await _settle()
            assert sent == [0, 1, 2, 3]  # the fifth waits: backpressure
            stats = ref.statistics().mailbox
            assert (stats.depth, stats.waiting_senders) == (4, 1)
            with pytest.raises(MailboxFull):
                ref.send_nowait(99)
        await _settle()
        assert probe.received["k"][1:] == list(range(10))
        assert ref.statistics().mailbox.peak == 4


async def test_ask_times_out_and_the_late_reply_harms_nobody(
    schedule_seed: int, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe()
    async with open_supervisor(probe.factory) as supervisor:
        ref = await supervisor.ensure("k")
        start = trio.current_time()
        with pytest.raises(AskTimeout):
            await ref.ask(("reply_after", 5), timeout=2)
        assert trio.current_time() - start == 2
        await trio.sleep(10)  # the actor answers the abandoned request
        assert ref.state is ActorState.RUNNING
        assert ref.statistics().restarts == 0
        assert await ref.ask("ping", timeout=1) == ("pong", "k", 1)


async def test_a_crash_while_stopping_for_a_restart_still_restarts_at_once(
    schedule_seed: int, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe(crash_on_stop={"k"})
    async with open_supervisor(probe.factory) as supervisor:
        ref = await supervisor.ensure("k")
        await trio.sleep(30)
        await supervisor.restart("k")
        assert probe.starts["k"] == [0.0, 30.0]  # no back-off delay for a requested restart
        assert ref.state is ActorState.RUNNING
        stats = ref.statistics()
        assert stats.restarts == 1
        assert stats.last_error is not None and stats.last_error.type == "Crash"
        assert probe.max_live["k"] == 1


async def test_a_restarted_actor_that_crashes_on_start_backs_off(
    schedule_seed: int, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe()
    async with open_supervisor(probe.factory, policy=SupervisorPolicy(backoff=NO_JITTER)) as supervisor:
        ref = await supervisor.ensure("k")
        probe.crash_on_start["k"] = 2
        await supervisor.restart("k")
        assert ref.state is ActorState.BACKING_OFF
        await trio.sleep(10)
        assert ref.state is ActorState.RUNNING
        assert _delays(probe.starts["k"]) == [0.0, 1.0, 2.0]


async def test_aclose_with_actors_mid_back_off_does_not_wait_for_their_delays(
    schedule_seed: int, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe(crash_on_start={"a": 1, "b": 1})
    policy = SupervisorPolicy(backoff=Backoff(initial_s=100.0, max_s=100.0, jitter=0.0))
    async with open_supervisor(probe.factory, policy=policy) as supervisor:
        for key in ("a", "b", "c"):
            await supervisor.ensure(key)
        assert supervisor.statistics().by_state == {"backing_off": 2, "running": 1}
        start = trio.current_time()
        await supervisor.aclose(grace=7)
        assert trio.current_time() == start
        assert supervisor.keys() == []
    assert {key: len(times) for key, times in probe.starts.items()} == {"a": 1, "b": 1, "c": 1}


async def test_aclose_cancels_ignoring_actors_at_one_shared_deadline(
    schedule_seed: int, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe(ignore_stop={"x", "y"}, crash_on_start={"z": 1})
    async with open_supervisor(probe.factory) as supervisor:
        for key in ("x", "y", "z", "w"):
            await supervisor.ensure(key)
        start = trio.current_time()
        await supervisor.aclose(grace=7)
        assert trio.current_time() - start == 7
    assert probe.cancelled == {"x": 1, "y": 1}
    assert probe.clean_stops == {"w": 1}
    assert sum(probe.live.values()) == 0


async def test_random_concurrent_operations_never_run_two_actors_for_a_key(
    schedule_seed: int, autojump_clock: trio.abc.Clock
) -> None:
    probe = Probe()
    rng = random.Random(schedule_seed)
    policy = SupervisorPolicy(backoff=Backoff(initial_s=0.5, jitter=0.2), stop_grace_s=1.0)
    async with open_supervisor(probe.factory, policy=policy, random=rng.random) as supervisor:

        async def chaos(worker: int) -> None:
            for _ in range(40):
                key = rng.randrange(3)
                match rng.randrange(6):
                    case 0 | 1:
                        await supervisor.ensure(key)
                    case 2:
                        await supervisor.stop(key, grace=rng.choice([0.0, 0.5]))
                    case 3:
                        await supervisor.restart(key)
                    case 4:
                        ref = supervisor.get(key)
                        if ref is not None and ref.state is ActorState.RUNNING:
                            ref.send_nowait("crash")
                    case _:
                        await trio.sleep(rng.choice([0.0, 0.3, 1.0]))

        # Virtual time: a deadlock makes the clock jump here and fail, instead of hanging.
        with trio.fail_after(3600):
            async with trio.open_nursery() as nursery:
                for worker in range(6):
                    nursery.start_soon(chaos, worker)
    assert max(probe.max_live.values()) == 1
    assert sum(probe.live.values()) == 0


def test_deterministic_scheduling_replays_a_run(schedule_seed: int) -> None:
    """The same seed reproduces the same supervisor history, which is what makes a reported
    seed worth replaying."""

    async def history() -> list[tuple[float, int]]:
        mailbox: Mailbox[int] = Mailbox(capacity=2)
        log: list[tuple[float, int]] = []

        async def consumer() -> None:
            async for msg in mailbox.inbox():
                assert not isinstance(msg, Request)
                log.append((trio.current_time(), msg))
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(consumer)
            async with trio.open_nursery() as producers:
                for n in range(4):
                    producers.start_soon(_produce, mailbox, n)
            mailbox.close()
        return log

    first = trio.run(history, clock=trio.testing.MockClock(autojump_threshold=0))
    trio._core._run._r.seed(schedule_seed)
    assert trio.run(history, clock=trio.testing.MockClock(autojump_threshold=0)) == first


async def _produce(mailbox: Mailbox[int], n: int) -> None:
    for step in range(5):
        await mailbox.send(n * 10 + step)
