"""Supervisor behaviours one at a time, on virtual time (the seeded interleaving tests live in
tests/concurrency)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Hashable
from typing import Any

import pytest
import trio
import trio.testing

from actor_admin.runtime import (
    ActorFailed,
    ActorState,
    AskTimeout,
    Backoff,
    ErrorInfo,
    MailboxClosed,
    Restart,
    Supervisor,
    SupervisorClosed,
    SupervisorPolicy,
    open_supervisor,
)
from tests.runtime._probe import Probe

NO_JITTER = Backoff(jitter=0.0)


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
async def supervisor(probe: Probe, autojump_clock: trio.abc.Clock) -> AsyncIterator[Supervisor[Hashable, Any]]:
    async with open_supervisor(probe.factory, policy=SupervisorPolicy(backoff=NO_JITTER)) as sup:
        yield sup


async def _settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def test_ensure_starts_a_running_actor_that_answers(
    supervisor: Supervisor[Hashable, Any], autojump_clock: trio.abc.Clock, probe: Probe
) -> None:
    ref = await supervisor.ensure("a")
    assert ref.state is ActorState.RUNNING
    assert await ref.ask("ping", timeout=1) == ("pong", "a", 1)


async def test_ensure_of_a_running_key_returns_its_actor_without_starting_another(
    supervisor: Supervisor[Hashable, Any], autojump_clock: trio.abc.Clock, probe: Probe
) -> None:
    first = await supervisor.ensure("a")
    second = await supervisor.ensure("a")
    assert first is second
    assert len(probe.starts["a"]) == 1


async def test_get_and_keys_see_only_started_keys(
    supervisor: Supervisor[Hashable, Any], autojump_clock: trio.abc.Clock
) -> None:
    assert supervisor.get("a") is None
    ref = await supervisor.ensure("a")
    assert supervisor.get("a") is ref
    assert supervisor.keys() == ["a"]


async def test_a_crashed_permanent_actor_is_restarted_after_the_first_delay(
    supervisor: Supervisor[Hashable, Any], autojump_clock: trio.abc.Clock, probe: Probe
) -> None:
    ref = await supervisor.ensure("a")
    await ref.send("crash")
    await _settle()
    assert ref.state is ActorState.BACKING_OFF
    await trio.sleep(1.0)
    await _settle()
    assert ref.state is ActorState.RUNNING
    assert probe.starts["a"] == [0.0, 1.0]
    assert ref.statistics().restarts == 1


async def test_last_error_records_type_and_message(
    supervisor: Supervisor[Hashable, Any], autojump_clock: trio.abc.Clock
) -> None:
    ref = await supervisor.ensure("a")
    await ref.send("crash")
    await _settle()
    assert ref.statistics().last_error == ErrorInfo(type="Crash", message="'a' crashed")


def test_error_info_unwraps_a_single_exception_group() -> None:
    group = ExceptionGroup("nursery", [ExceptionGroup("inner", [KeyError("k")])])
    assert ErrorInfo.of(group) == ErrorInfo(type="KeyError", message="'k'")


async def test_a_permanent_actor_that_returns_is_restarted(
    supervisor: Supervisor[Hashable, Any], autojump_clock: trio.abc.Clock, probe: Probe
) -> None:
    ref = await supervisor.ensure("a")
    await ref.send("exit")
    await trio.sleep(1.0)
    await _settle()
    assert len(probe.starts["a"]) == 2
    assert ref.statistics().last_error is None


@pytest.mark.parametrize(
    ("restart", "message", "restarted"),
    [
        (Restart.TRANSIENT, "exit", False),
        (Restart.TRANSIENT, "crash", True),
        (Restart.TEMPORARY, "exit", False),
        (Restart.TEMPORARY, "crash", False),
    ],
)
async def test_restart_types_follow_otp(
    probe: Probe, autojump_clock: trio.abc.Clock, restart: Restart, message: str, restarted: bool
) -> None:
    async with open_supervisor(probe.factory, restart=restart, random=lambda: 0.5) as supervisor:
        ref = await supervisor.ensure("a")
        await ref.send(message)
        await trio.sleep(10)
        assert (len(probe.starts["a"]) == 2) is restarted
        assert (supervisor.get("a") is not None) is restarted


async def test_messages_sent_during_back_off_reach_the_next_run(
    supervisor: Supervisor[Hashable, Any], autojump_clock: trio.abc.Clock, probe: Probe
) -> None:
    ref = await supervisor.ensure("a")
    await ref.send("crash")
    await _settle()
    assert ref.state is ActorState.BACKING_OFF
    for n in range(3):
        await ref.send(n)
    await trio.sleep(1.0)
    await _settle()
    assert probe.received["a"] == ["crash", 0, 1, 2]


async def test_ask_during_back_off_is_answered_by_the_next_run(
    supervisor: Supervisor[Hashable, Any],
    autojump_clock: trio.abc.Clock,
) -> None:
    ref = await supervisor.ensure("a")
    await ref.send("crash")
    await _settle()
    assert await ref.ask("ping", timeout=5) == ("pong", "a", 2)
    assert trio.current_time() == pytest.approx(1.0)


async def test_ask_during_a_longer_back_off_times_out(
    supervisor: Supervisor[Hashable, Any], autojump_clock: trio.abc.Clock
) -> None:
    ref = await supervisor.ensure("a")
    await ref.send("crash")
    await _settle()
    with pytest.raises(AskTimeout):
        await ref.ask("ping", timeout=0.5)


async def test_stop_removes_the_key_and_closes_its_mailbox(
    supervisor: Supervisor[Hashable, Any], autojump_clock: trio.abc.Clock, probe: Probe
) -> None:
    ref = await supervisor.ensure("a")
    assert await supervisor.stop("a")
    assert supervisor.get("a") is None
    assert probe.clean_stops["a"] == 1
    with pytest.raises(MailboxClosed):
        await ref.send("late")


async def test_stop_of_an_unknown_key_reports_false(
    supervisor: Supervisor[Hashable, Any], autojump_clock: trio.abc.Clock
) -> None:
    assert not await supervisor.stop("nobody")


async def test_ensure_after_stop_starts_a_fresh_actor(
    supervisor: Supervisor[Hashable, Any], autojump_clock: trio.abc.Clock, probe: Probe
) -> None:
    old = await supervisor.ensure("a")
    await supervisor.stop("a")
    new = await supervisor.ensure("a")
    assert new is not old
    assert new.state is ActorState.RUNNING
    assert len(probe.starts["a"]) == 2


async def test_ensure_during_a_stop_waits_for_it_and_starts_afresh(
    supervisor: Supervisor[Hashable, Any], autojump_clock: trio.abc.Clock, probe: Probe
) -> None:
    probe.ignore_stop.add("a")
    await supervisor.ensure("a")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: supervisor.stop("a", grace=3))
        await _settle()
        ref = await supervisor.ensure("a")
    assert trio.current_time() == pytest.approx(3)
    assert ref.state is ActorState.RUNNING
    assert probe.max_live["a"] == 1


async def test_restart_of_a_running_actor_keeps_its_queued_messages(
    supervisor: Supervisor[Hashable, Any], autojump_clock: trio.abc.Clock, probe: Probe
) -> None:
    ref = await supervisor.ensure("a")
    await ref.send(("sleep", 5))
    await _settle()
    await ref.send("queued")
    await supervisor.restart("a")
    await _settle()
    assert len(probe.starts["a"]) == 2
    assert "queued" in probe.received["a"]
    assert ref.statistics().restarts == 1


async def test_restart_of_an_unknown_key_starts_it(
    supervisor: Supervisor[Hashable, Any], autojump_clock: trio.abc.Clock
) -> None:
    ref = await supervisor.restart("a")
    assert ref.state is ActorState.RUNNING


async def test_a_failed_key_refuses_messages(probe: Probe, autojump_clock: trio.abc.Clock) -> None:
    probe.crash_on_start["a"] = 1
    policy = SupervisorPolicy(intensity_max_restarts=0)
    async with open_supervisor(probe.factory, policy=policy) as supervisor:
        ref = await supervisor.ensure("a")
        assert ref.state is ActorState.FAILED
        with pytest.raises(ActorFailed, match="crashed on start"):
            await ref.send("hello")
        with pytest.raises(ActorFailed):
            ref.send_nowait("hello")
        with pytest.raises(ActorFailed):
            await ref.ask("hello", timeout=1)


async def test_statistics_aggregate_states_restarts_and_depth(
    supervisor: Supervisor[Hashable, Any], autojump_clock: trio.abc.Clock, probe: Probe
) -> None:
    probe.crash_on_start["b"] = 1
    a = await supervisor.ensure("a")
    await supervisor.ensure("b")
    await a.send(("sleep", 100))
    await _settle()
    for n in range(3):
        a.send_nowait(n)
    stats = supervisor.statistics()
    assert stats.actors == 2
    assert stats.by_state == {"running": 1, "backing_off": 1}
    assert stats.mailbox_max_depth == 3
    await trio.sleep(1)
    await _settle()
    assert supervisor.statistics().restarts_total == 1
    assert {s.key for s in supervisor.actor_statistics()} == {"a", "b"}


async def test_ended_total_counts_each_run_that_ended_restarts_and_stops_alike(
    supervisor: Supervisor[Hashable, Any], autojump_clock: trio.abc.Clock, probe: Probe
) -> None:
    """The collector policy's count of actors whose frozen garbage waits (docs/capacity.md#garbage-collection)."""
    probe.crash_on_start["b"] = 1
    await supervisor.ensure("a")
    await supervisor.ensure("b")
    assert (supervisor.actors, supervisor.ended_total) == (2, 0)
    await trio.sleep(1)
    await _settle()
    assert (supervisor.actors, supervisor.ended_total) == (2, 1)  # b's crashed run, restarted
    assert await supervisor.stop("a")
    assert (supervisor.actors, supervisor.ended_total) == (1, 2)

async def test_ensure_after_close_is_refused(probe: Probe, autojump_clock: trio.abc.Clock) -> None:
    async with open_supervisor(probe.factory) as supervisor:
        await supervisor.aclose()
        with pytest.raises(SupervisorClosed):
            await supervisor.ensure("a")


async def test_an_error_in_the_block_comes_out_unwrapped(probe: Probe, autojump_clock: trio.abc.Clock) -> None:
    with pytest.raises(KeyError):
        async with open_supervisor(probe.factory) as supervisor:
            await supervisor.ensure("a")
            raise KeyError("mine")


async def test_leaving_the_block_stops_actors_politely(probe: Probe, autojump_clock: trio.abc.Clock) -> None:
    async with open_supervisor(probe.factory) as supervisor:
        await supervisor.ensure("a")
        await supervisor.ensure("b")
    assert probe.clean_stops == {"a": 1, "b": 1}
    assert sum(probe.live.values()) == 0


async def test_an_actor_that_raises_a_single_error_group_is_recorded_as_that_error(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def actor(ctx: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_raise, OSError("link down"))

    async with open_supervisor(lambda key: actor, random=lambda: 0.5) as supervisor:
        ref = await supervisor.ensure("a")
        await _settle()
        assert ref.statistics().last_error == ErrorInfo(type="OSError", message="link down")


async def _raise(error: BaseException) -> None:
    raise error
