"""Group commit: many tasks' small writes, done as one (docs/data.md#group-commit).

Each caller ``await``s :meth:`GroupCommit.submit` with its request; one small task takes what is
waiting (up to ``max_batch`` requests, after lingering ``linger_s`` for more), hands the whole batch
to ``write`` once, and answers every caller with its own result or error. While one batch is being
written the next one gathers, so under load a round trip serves hundreds of callers and when idle a
request leaves at once (with ``linger_s = 0``).

Order: batches are written one at a time, in the order their requests were submitted, and a batch
keeps its requests in that order. A caller that waits for its answer before submitting again (a
salon's actor does) therefore never has a request written before its previous one.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Generic, TypeVar, cast, final

import attrs
import trio

Q = TypeVar("Q")
A = TypeVar("A")

#: Writes a batch; answers each request, in order, with its result or the error it alone failed with.
#: Raising fails every request of the batch with that error.
WriteMany = Callable[[Sequence[Q]], Awaitable[Sequence[A | Exception]]]


@final
class _Pending(Generic[Q, A]):
    """One request and its answer; its caller parked on trio's lowest-level primitive (no Event: this
    is made and answered once per message)."""

    __slots__ = ("answered", "detached", "error", "request", "result", "shared", "task")

    def __init__(self, request: Q, *, detached: bool = False) -> None:
        self.request = request
        self.detached = detached  # nobody waits: an error goes to the group commit's ``dropped``
        self.answered = False
        self.result: A | None = None
        self.error: Exception | None = None
        self.shared = False  # the error is the whole batch's: each caller raises a copy of it
        self.task: trio.lowlevel.Task | None = None

    def answer(self, result: A | Exception, *, shared: bool = False) -> Exception | None:
        """Give the caller its answer (once); for a detached request, the error nobody else will see."""
        if self.answered:
            return None
        self.answered = True
        if self.detached:
            return result if isinstance(result, Exception) else None
        if isinstance(result, Exception):
            self.error, self.shared = result, shared
        else:
            self.result = result
        task, self.task = self.task, None
        if task is not None:
            trio.lowlevel.reschedule(task)
        return None

    async def wait(self) -> None:
        if self.answered:
            await trio.lowlevel.checkpoint()
            return
        self.task = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self.task = None  # cancelled: the answer, when it comes, goes nowhere
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


@final
@attrs.define
class GroupCommitStatistics:
    """What a group commit has done since it started (for /status and benchmarks)."""

    batches: int = 0
    requests: int = 0
    largest_batch: int = 0


@final
@attrs.frozen
class GroupCommitOptions:
    """How a group commit gathers its batches.

    Attributes:
        max_batch: the most requests one ``write`` gets.
        linger_s: how long a batch waits for more requests after its first (0: only what is
            already waiting, which under load is plenty: everything that came during the last write).
        in_flight: how many batches may be written at once. With more than one, two requests of one
            caller are kept in order only if it waits for the first's answer before the second.
        capacity: requests waiting beyond the batches being written; past it ``submit`` waits.
    """

    max_batch: int = attrs.field(default=500, validator=attrs.validators.ge(1))
    linger_s: float = attrs.field(default=0.0, validator=[attrs.validators.ge(0.0), attrs.validators.lt(math.inf)])
    in_flight: int = attrs.field(default=1, validator=attrs.validators.ge(1))
    capacity: int = attrs.field(default=2000, validator=attrs.validators.ge(1))


@final
class GroupCommit(Generic[Q, A]):
    """Requests of many tasks, written in batches by one task (see the module docstring).

    Args:
        write: writes one batch (see :data:`WriteMany`).
        options: how batches are gathered.
        closed: the error a request gets when the group commit is not running (or stops before
            answering it).
        dropped: told of the requests given with :meth:`enqueue` (nobody waits for them) that failed,
            with their error: once per batch that failed as a whole, once per request that failed alone.
    """

    def __init__(
        self,
        write: WriteMany[Q, A],
        options: GroupCommitOptions = GroupCommitOptions(),
        *,
        closed: Callable[[], Exception] = lambda: RuntimeError("the group commit is not running"),
        dropped: Callable[[Sequence[Q], Exception], None] = lambda requests, error: None,
    ) -> None:
        self._write = write
        self.options = options
        self._closed = closed
        self._dropped = dropped
        self._send, self._receive = trio.open_memory_channel[_Pending[Q, A]](options.capacity)
        self._running = False
        self.statistics = GroupCommitStatistics()

    @property
    def running(self) -> bool:
        return self._running

    async def submit(self, request: Q) -> A:
        """Have ``request`` written with others; its result, or the error it failed with.

        Cancelled while waiting, the caller stops waiting; the request may still be written.
        """
        if not self._running:
            raise self._closed()
        pending: _Pending[Q, A] = _Pending(request)
        try:
            # Queued without a checkpoint of its own when there is room: waiting for the answer is
            # the checkpoint, and one task switch less a message counts on the inbound path
            # (docs/capacity.md#inbound-messages).
            self._send.send_nowait(pending)
        except trio.WouldBlock:
            try:
                await self._send.send(pending)
            except trio.ClosedResourceError:
                raise self._closed() from None
        except trio.ClosedResourceError:
            raise self._closed() from None
        await pending.wait()
        if pending.error is not None:
            if not pending.shared:
                raise pending.error
            # Hundreds of callers raising one exception object would each grow its traceback.
            raise _copy_of(pending.error) from pending.error
        return cast(A, pending.result)  # set whenever error is not

    async def enqueue(self, request: Q) -> None:
        """Have ``request`` written with others without waiting for it: returns once it is queued
        (waiting only while ``capacity`` requests are). Its error, if any, goes to ``dropped``."""
        await self.enqueue_many((request,))

    async def enqueue_many(self, requests: Iterable[Q]) -> None:
        """:meth:`enqueue` for each of ``requests``, in order, with no task switch while there is room
        (the caller goes on at once; it waits, request by request, only while ``capacity`` are queued)."""
        if not self._running:
            raise self._closed()
        send = self._send
        try:
            for request in requests:
                pending: _Pending[Q, A] = _Pending(request, detached=True)
                try:
                    send.send_nowait(pending)
                except trio.WouldBlock:
                    await send.send(pending)
        except trio.ClosedResourceError:
            raise self._closed() from None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write batches until cancelled; then every request still waiting gets the ``closed`` error."""
        if self._running:
            raise RuntimeError("this group commit is already running")
        self._running = True
        batches: dict[int, list[_Pending[Q, A]]] = {}
        options = self.options
        slots = trio.CapacityLimiter(options.in_flight)

        async def flush(number: int) -> None:
            batch = batches[number]
            try:
                await self._flush(batch)
            finally:
                del batches[number]
                slots.release_on_behalf_of(number)
                self._fail([p for p in batch if not p.answered], self._closed())  # cut off by a stop

        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                for number in itertools.count():
                    await slots.acquire_on_behalf_of(number)
                    batch = batches[number] = [await self._receive.receive()]
                    if options.linger_s > 0:
                        with trio.move_on_after(options.linger_s):
                            while len(batch) < options.max_batch:
                                batch.append(await self._receive.receive())
                    while len(batch) < options.max_batch:
                        try:
                            batch.append(self._receive.receive_nowait())
                        except trio.WouldBlock:
                            break
                    nursery.start_soon(flush, number)
        finally:
            self._running = False
            self._send.close()
            unwritten = [p for batch in batches.values() for p in batch if not p.answered]
            while True:
                try:
                    unwritten.append(self._receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            self._fail(unwritten, self._closed())

    async def _flush(self, batch: list[_Pending[Q, A]]) -> None:
        stats = self.statistics
        stats.batches += 1
        stats.requests += len(batch)
        stats.largest_batch = max(stats.largest_batch, len(batch))
        try:
            results = await self._write([p.request for p in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} was answered with {len(results)} results")
        except Exception as exc:
            self._fail(batch, exc)
            return
        for pending, result in zip(batch, results, strict=True):
            error = pending.answer(result)
            if error is not None:
                self._dropped([pending.request], error)

    def _fail(self, batch: list[_Pending[Q, A]], error: Exception) -> None:
        """Every request of ``batch`` failed with ``error``: each waiting caller gets (a copy of) it."""
        dropped = [p.request for p in batch if p.answer(error, shared=True) is not None]
        if dropped:
            self._dropped(dropped, error)


def _copy_of(error: Exception) -> Exception:
    try:
        fresh = copy.copy(error)
    except Exception:
        return RuntimeError(str(error))
    return fresh


@asynccontextmanager
async def open_group_commit(group: GroupCommit[Q, A]) -> AsyncIterator[GroupCommit[Q, A]]:
    """Run ``group`` for the block's duration (its task in a nursery of its own)."""
    async with trio.open_nursery() as nursery:
        await nursery.start(group.run)
        try:
            yield group
        finally:
            nursery.cancel_scope.cancel()
