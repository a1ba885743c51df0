"""GroupCommit on virtual time: what a batch gathers, in which order, and who gets which answer."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.lowlevel
import trio.testing

from actor_admin.runtime import GroupCommit, GroupCommitOptions, open_group_commit


class Writer:
    """Answers each request with its double (a negative one fails alone); records every batch."""

    def __init__(self, *, delay_s: float = 0.01) -> None:
        self.batches: list[list[int]] = []
        self.delay_s = delay_s
        self.down = False
        self.writing = 0
        self.most_at_once = 0

    async def write(self, batch: Sequence[int]) -> list[int | Exception]:
        self.batches.append(list(batch))
        self.writing += 1
        self.most_at_once = max(self.most_at_once, self.writing)
        try:
            await trio.sleep(self.delay_s)
        finally:
            self.writing -= 1
        if self.down:
            raise ConnectionError("the server is down")
        return [ValueError(f"bad {n}") if n < 0 else n * 2 for n in batch]


async def _submit_all(group: GroupCommit[int, int], requests: Sequence[int]) -> dict[int, object]:
    answers: dict[int, object] = {}

    async def one(n: int) -> None:
        try:
            answers[n] = await group.submit(n)
        except Exception as exc:
            answers[n] = exc

    async with trio.open_nursery() as nursery:
        for n in requests:
            nursery.start_soon(one, n)
            await trio.lowlevel.checkpoint()  # submitted in this order
    return answers


async def test_what_waits_goes_out_together_in_order_and_each_caller_gets_its_own_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    writer = Writer()
    async with open_group_commit(GroupCommit(writer.write, GroupCommitOptions(max_batch=4))) as group:
        answers = await _submit_all(group, [1, 2, -3, 4, 5, 6, 7])
    # Which tasks run first is trio's choice: the batches' make-up varies, not what they add up to.
    assert sorted(n for batch in writer.batches for n in batch) == [-3, 1, 2, 4, 5, 6, 7]
    assert max(map(len, writer.batches)) <= 4 and len(writer.batches) < 7  # gathered while one was written
    assert {n: a for n, a in answers.items() if n != -3} == {1: 2, 2: 4, 4: 8, 5: 10, 6: 12, 7: 14}
    assert isinstance(answers[-3], ValueError)  # failed alone
    assert (group.statistics.batches, group.statistics.requests) == (len(writer.batches), 7)


async def test_batches_keep_the_order_requests_were_queued_in(autojump_clock: trio.testing.MockClock) -> None:
    writer = Writer()
    async with open_group_commit(GroupCommit(writer.write, GroupCommitOptions(max_batch=3))) as group:
        for n in range(10):
            await group.enqueue(n)
        await trio.sleep(1.0)
    assert [n for batch in writer.batches for n in batch] == list(range(10))


async def test_a_whole_batch_failing_fails_each_caller_with_its_own_copy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    writer = Writer()
    writer.down = True
    async with open_group_commit(GroupCommit(writer.write)) as group:
        answers = await _submit_all(group, [1, 2, 3])
    errors = list(answers.values())
    assert all(isinstance(e, ConnectionError) and str(e) == "the server is down" for e in errors)
    assert len({id(e) for e in errors}) == 3


async def test_lingering_gathers_what_comes_within_the_window(autojump_clock: trio.testing.MockClock) -> None:
    writer = Writer()
    options = GroupCommitOptions(linger_s=0.005, max_batch=10)
    async with open_group_commit(GroupCommit(writer.write, options)) as group, trio.open_nursery() as nursery:
        for n in range(3):
            nursery.start_soon(group.submit, n)
            await trio.sleep(0.002)
        await trio.sleep(0.1)
        nursery.start_soon(group.submit, 9)
    assert writer.batches == [[0, 1, 2], [9]]


async def test_in_flight_batches_are_written_at_once(autojump_clock: trio.testing.MockClock) -> None:
    writer = Writer()
    async with open_group_commit(GroupCommit(writer.write, GroupCommitOptions(max_batch=2, in_flight=3))) as group:
        await _submit_all(group, list(range(6)))
    assert writer.most_at_once == 3


async def test_a_cancelled_caller_stops_waiting_and_the_others_are_answered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    writer = Writer(delay_s=1.0)
    async with open_group_commit(GroupCommit(writer.write)) as group:
        with trio.move_on_after(0.5) as scope:
            await group.submit(1)
        assert scope.cancelled_caught
        assert await group.submit(2) == 4
    assert writer.batches == [[1], [2]]


async def test_requests_after_a_stop_or_cut_off_by_it_get_the_closed_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    writer = Writer(delay_s=10.0)
    group = GroupCommit(writer.write, closed=lambda: LookupError("stopped"))
    with pytest.raises(LookupError):
        await group.submit(1)  # not running yet
    outcome: list[BaseException] = []

    async def caller() -> None:
        try:
            await group.submit(2)
        except LookupError as exc:
            outcome.append(exc)

    async with trio.open_nursery() as outer:
        async with open_group_commit(group):
            outer.start_soon(caller)
            await trio.sleep(1.0)  # its batch is being written when the group commit stops
    assert len(outcome) == 1 and not group.running


async def test_enqueued_requests_are_not_waited_for_and_their_errors_go_to_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    writer = Writer()
    dropped: list[tuple[list[int], str]] = []
    group = GroupCommit(writer.write, dropped=lambda requests, error: dropped.append((list(requests), str(error))))
    async with open_group_commit(group):
        started = trio.current_time()
        await group.enqueue(1)
        await group.enqueue(-2)
        assert trio.current_time() == started  # not waiting for the 10 ms write
        await trio.sleep(1.0)
        writer.down = True
        await group.enqueue(3)
        await group.enqueue(4)
        await trio.sleep(1.0)
    assert dropped[0] == ([-2], "bad -2")  # alone: its batch was written
    assert sorted(n for requests, _ in dropped[1:] for n in requests) == [3, 4]  # the batch (or two) that failed
    assert {error for _, error in dropped[1:]} == {"the server is down"}


async def test_queueing_while_there_is_room_costs_no_task_switch(autojump_clock: trio.testing.MockClock) -> None:
    # Each switch is a pass of trio's scheduler, once per message on the inbound path
    # (docs/capacity.md#inbound-messages): enqueuing a whole batch and submitting queue without one.
    writer = Writer()
    group = GroupCommit(writer.write)
    async with open_group_commit(group), trio.open_nursery() as nursery:
        others_ran = 0

        async def other() -> None:
            nonlocal others_ran
            others_ran += 1

        nursery.start_soon(other)
        await group.enqueue_many([1, 2])
        await group.enqueue(3)
        assert others_ran == 0  # the caller went on without yielding
        assert await group.submit(4) == 8  # waiting for the answer is the switch
        assert others_ran == 1
    assert [n for batch in writer.batches for n in batch] == [1, 2, 3, 4]
