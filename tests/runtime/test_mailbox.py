"""Mailbox: bounded sends, request/reply, polite stops and closing, on virtual time."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from actor_admin.runtime import AskTimeout, Mailbox, MailboxClosed, MailboxFull, Request


async def _echo(mailbox: Mailbox[Any], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    inbox = mailbox.inbox()
    task_status.started()
    async for msg in inbox:
        if isinstance(msg, Request):
            msg.reply(("echo", msg.body))


def test_send_nowait_on_a_full_mailbox_raises_mailbox_full() -> None:
    mailbox: Mailbox[int] = Mailbox(capacity=2)
    mailbox.send_nowait(1)
    mailbox.send_nowait(2)
    with pytest.raises(MailboxFull, match="2 messages"):
        mailbox.send_nowait(3)


def test_mailbox_full_is_a_would_block() -> None:
    assert issubclass(MailboxFull, trio.WouldBlock)


def test_statistics_report_depth_capacity_and_peak() -> None:
    mailbox: Mailbox[int] = Mailbox(capacity=5)
    for n in range(3):
        mailbox.send_nowait(n)
    stats = mailbox.statistics()
    assert (stats.depth, stats.capacity, stats.peak, stats.waiting_senders) == (3, 5, 3, 0)


async def test_peak_remembers_the_deepest_point_after_draining() -> None:
    mailbox: Mailbox[int] = Mailbox(capacity=5)
    inbox = mailbox.inbox()
    for n in range(4):
        mailbox.send_nowait(n)
    for _ in range(4):
        await inbox.receive()
    stats = mailbox.statistics()
    assert (stats.depth, stats.peak) == (0, 4)


async def test_send_waits_while_full_and_counts_as_a_waiting_sender(autojump_clock: trio.abc.Clock) -> None:
    mailbox: Mailbox[int] = Mailbox(capacity=1)
    inbox = mailbox.inbox()
    mailbox.send_nowait(1)
    sent = trio.Event()

    async def sender() -> None:
        await mailbox.send(2)
        sent.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        assert not sent.is_set()
        assert mailbox.statistics().waiting_senders == 1
        assert await inbox.receive() == 1
        await sent.wait()
    assert await inbox.receive() == 2


async def test_messages_arrive_in_send_order() -> None:
    mailbox: Mailbox[int] = Mailbox(capacity=8)
    inbox = mailbox.inbox()
    for n in range(8):
        await mailbox.send(n)
    assert [await inbox.receive() for _ in range(8)] == list(range(8))


async def test_ask_returns_the_reply() -> None:
    mailbox: Mailbox[str] = Mailbox()
    async with trio.open_nursery() as nursery:
        await nursery.start(_echo, mailbox)
        assert await mailbox.ask("hello", timeout=1) == ("echo", "hello")
        nursery.cancel_scope.cancel()


async def test_ask_raises_what_the_actor_failed_the_request_with() -> None:
    mailbox: Mailbox[str] = Mailbox()

    async def refuser() -> None:
        request = await mailbox.inbox().receive()
        assert isinstance(request, Request)
        request.fail(LookupError("no such thing"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(refuser)
        with pytest.raises(LookupError, match="no such thing"):
            await mailbox.ask("thing", timeout=1)


async def test_ask_times_out_and_a_late_reply_is_dropped(autojump_clock: trio.abc.Clock) -> None:
    mailbox: Mailbox[str] = Mailbox()
    inbox = mailbox.inbox()
    start = trio.current_time()
    with pytest.raises(AskTimeout):
        await mailbox.ask("slow", timeout=3)
    assert trio.current_time() - start == pytest.approx(3)
    request = await inbox.receive()
    assert isinstance(request, Request)
    assert request.abandoned
    request.reply("too late")  # must not raise
    assert request.answered


async def test_ask_timeout_covers_waiting_for_room(autojump_clock: trio.abc.Clock) -> None:
    mailbox: Mailbox[str] = Mailbox(capacity=1)
    mailbox.send_nowait("filler")
    with pytest.raises(AskTimeout):
        await mailbox.ask("question", timeout=2)
    assert mailbox.statistics().depth == 1


def test_a_request_is_answered_only_once() -> None:
    request: Request[str] = Request("q")
    request.reply(1)
    with pytest.raises(RuntimeError, match="already answered"):
        request.reply(2)
    with pytest.raises(RuntimeError, match="already answered"):
        request.fail(ValueError())


async def test_polite_stop_ends_iteration_after_the_queued_messages() -> None:
    mailbox: Mailbox[int] = Mailbox()
    inbox = mailbox.inbox()
    for n in range(3):
        mailbox.send_nowait(n)
    await mailbox.send_stop(inbox)
    mailbox.send_nowait(99)  # after the stop: for whoever reads next
    assert inbox.stop_requested
    assert [msg async for msg in inbox] == [0, 1, 2]
    with pytest.raises(trio.EndOfChannel):
        await inbox.receive()


async def test_a_stop_for_an_earlier_inbox_is_skipped_by_the_next() -> None:
    mailbox: Mailbox[int] = Mailbox()
    first = mailbox.inbox()
    await mailbox.send_stop(first)
    mailbox.send_nowait(7)
    second = mailbox.inbox()
    assert await second.receive() == 7
    assert not second.stop_requested


async def test_close_refuses_further_messages() -> None:
    mailbox: Mailbox[int] = Mailbox()
    mailbox.close()
    with pytest.raises(MailboxClosed):
        mailbox.send_nowait(1)
    with pytest.raises(MailboxClosed):
        await mailbox.send(1)


async def test_close_fails_queued_requests() -> None:
    mailbox: Mailbox[str] = Mailbox()

    async def closer() -> None:
        await trio.testing.wait_all_tasks_blocked()
        mailbox.close()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(closer)
        with pytest.raises(MailboxClosed):
            await mailbox.ask("never handled", timeout=10)


async def test_close_wakes_blocked_senders_with_mailbox_closed() -> None:
    mailbox: Mailbox[int] = Mailbox(capacity=0)
    outcome: list[BaseException] = []

    async def sender() -> None:
        try:
            await mailbox.send(1)
        except MailboxClosed as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        mailbox.close()
    assert len(outcome) == 1


async def test_inbox_ends_when_the_mailbox_is_closed_and_drained() -> None:
    mailbox: Mailbox[int] = Mailbox()
    inbox = mailbox.inbox()
    mailbox.close()
    with pytest.raises(trio.EndOfChannel):
        await inbox.receive()


async def test_depth_property_agrees_with_statistics() -> None:
    mailbox: Mailbox[int] = Mailbox(capacity=4)
    inbox = mailbox.inbox()
    for n in range(3):
        mailbox.send_nowait(n)
    assert mailbox.depth == mailbox.statistics().depth == 3
    await inbox.receive()
    assert mailbox.depth == mailbox.statistics().depth == 2
