"""A bounded mailbox: one trio memory channel plus the counters ``statistics()`` needs.

The channel is the only queue. Senders put messages straight into it and the actor takes them
straight out through an `Inbox`; requests (`Request`) and polite stops travel in the same
channel, so they keep their order relative to ordinary messages.
"""

from __future__ import annotations

from typing import Final, Generic, TypeAlias, TypeVar, cast, final

import attrs
import trio

from ._errors import AskTimeout, MailboxClosed, MailboxFull

T = TypeVar("T")

_UNSET: Final = object()


@final
@attrs.define(eq=False)
class Request(Generic[T]):
    """A message that wants an answer: ``body`` plus a one-shot reply slot.

    The actor answers with `reply` or `fail`, exactly once. If the asker has already given up
    (its timeout passed), the answer is dropped silently: the actor need not know or care.
    """

    body: T
    _done: trio.Event = attrs.field(init=False, factory=trio.Event)
    _value: object = attrs.field(init=False, default=_UNSET)
    _error: BaseException | None = attrs.field(init=False, default=None)
    _abandoned: bool = attrs.field(init=False, default=False)

    @property
    def answered(self) -> bool:
        """Whether `reply` or `fail` was called."""
        return self._done.is_set()

    @property
    def abandoned(self) -> bool:
        """Whether the asker gave up; an actor may skip expensive work for such a request."""
        return self._abandoned

    def reply(self, value: object) -> None:
        """Answer the request; the asker's ``ask`` returns ``value``.

        Raises:
            RuntimeError: the request was already answered.
        """
        self._settle()
        self._value = value
        self._done.set()

    def fail(self, error: BaseException) -> None:
        """Answer the request with an error; the asker's ``ask`` raises ``error``.

        Raises:
            RuntimeError: the request was already answered.
        """
        self._settle()
        self._error = error
        self._done.set()

    def _settle(self) -> None:
        if self._done.is_set():
            raise RuntimeError("this request was already answered")

    def _outcome(self) -> object:
        if self._error is not None:
            raise self._error
        return self._value


@final
@attrs.frozen
class _Stop:
    """The polite stop, addressed to one `Inbox` so that a stop meant for an earlier run of the
    actor, still sitting in the channel, does not stop the next run."""

    generation: int


#: What actually travels in a ``Mailbox[T]``'s channel.
_Item: TypeAlias = T | Request[T] | _Stop


@final
@attrs.frozen
class MailboxStatistics:
    """A snapshot of a mailbox, for ``/status`` and metrics.

    Attributes:
        depth: messages waiting in the mailbox now.
        capacity: how many it holds before senders wait.
        peak: the most messages that waited for the actor at once since the mailbox was made.
        waiting_senders: tasks blocked in ``send`` because the mailbox is full.
    """

    depth: int
    capacity: int
    peak: int
    waiting_senders: int


@final
@attrs.define(eq=False)
class Mailbox(Generic[T]):
    """A bounded queue of messages for one actor, kept across the actor's restarts.

    ``send`` waits while the mailbox is full (backpressure reaches the sender instead of memory
    growing); ``send_nowait`` raises `MailboxFull` instead; ``ask`` sends a `Request` and waits
    for its reply. The actor reads through `inbox`.
    """

    capacity: int = attrs.field(default=64, validator=attrs.validators.ge(0))
    _send: trio.MemorySendChannel[_Item[T]] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[_Item[T]] = attrs.field(init=False)
    # Counters for ``peak`` only; ``depth`` comes from trio itself. They cost two integer
    # increments per message, where calling trio's statistics() per message would cost a
    # record allocation each time.
    _sent: int = attrs.field(init=False, default=0)
    _received: int = attrs.field(init=False, default=0)
    _peak: int = attrs.field(init=False, default=0)
    _generation: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[_Item[T]](self.capacity)

    def __repr__(self) -> str:
        return f"<Mailbox {self.statistics()}>"

    async def send(self, msg: T) -> None:
        """Put ``msg`` in the mailbox, waiting while it is full.

        Raises:
            MailboxClosed: the mailbox was closed (its actor was stopped for good).
        """
        # trio's own send() unrolled here (this is the hot path: no extra call frame), with
        # the counter moved in the same synchronous step as the message, where a receiver
        # running in between would otherwise see depth -1.
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            self._send.send_nowait(msg)
        except trio.WouldBlock:
            await self._send_blocking(msg)
            return
        except trio.ClosedResourceError:
            raise MailboxClosed("mailbox closed: its actor was stopped") from None
        self._sent += 1
        depth = self._sent - self._received
        if depth > self._peak:
            self._peak = min(depth, self.capacity)  # see _note_sent
        await trio.lowlevel.cancel_shielded_checkpoint()

    def send_nowait(self, msg: T) -> None:
        """Put ``msg`` in the mailbox if there is room.

        Raises:
            MailboxFull: the mailbox holds ``capacity`` messages.
            MailboxClosed: the mailbox was closed.
        """
        try:
            self._send.send_nowait(msg)
        except trio.WouldBlock:
            raise MailboxFull(f"mailbox full ({self.capacity} messages waiting)") from None
        except trio.ClosedResourceError:
            raise MailboxClosed("mailbox closed: its actor was stopped") from None
        self._note_sent()

    # The timeout is part of the operation, not a wrapper around it: when it passes, the reply
    # slot is abandoned so the late answer is dropped.
    async def ask(self, msg: T, timeout: float) -> object:  # noqa: ASYNC109
        """Send ``Request(msg)`` and return the actor's reply.

        ``timeout`` (seconds) covers both waiting for room in the mailbox and waiting for the
        reply, so an ask to an actor that is backing off waits for its restart up to then.

        Raises:
            AskTimeout: no reply within ``timeout``; a later reply is dropped.
            MailboxClosed: the mailbox was closed, before or while the request waited in it.
            Exception: whatever the actor passed to `Request.fail`.
        """
        request = Request(msg)
        with trio.move_on_after(timeout):
            await self.send(cast(T, request))  # requests share the channel with messages
            await request._done.wait()
        # Checked after the scope rather than inside it: a reply that arrived just as the
        # deadline passed is still a reply.
        if request._done.is_set():
            return request._outcome()
        request._abandoned = True
        raise AskTimeout(f"no reply within {timeout} s")

    @property
    def depth(self) -> int:
        """Messages waiting now, from the counters the mailbox keeps anyway: no record is built, so
        summing over every actor for ``/status`` stays cheap (may read one high, see `_note_sent`)."""
        return min(max(self._sent - self._received, 0), self.capacity)

    def statistics(self) -> MailboxStatistics:
        """Depth, capacity, peak and waiting senders, now."""
        channel = self._send.statistics()
        return MailboxStatistics(
            depth=channel.current_buffer_used,
            capacity=self.capacity,
            peak=self._peak,
            waiting_senders=channel.tasks_waiting_send,
        )

    def inbox(self) -> Inbox[T]:
        """A fresh receiving side for one run of the actor.

        Polite stops sent to earlier inboxes (`send_stop`) are skipped by this one, so a stop
        that an ignoring or cancelled run left behind does not end the next run at once.
        """
        self._generation += 1
        return Inbox(self, self._generation)

    async def send_stop(self, inbox: Inbox[T]) -> None:
        """Ask ``inbox``'s reader politely to stop: after the messages already queued, its
        ``receive`` raises `trio.EndOfChannel` and ``async for`` over it ends.

        Waits while the mailbox is full: the stop takes its turn like any message.
        """
        inbox.stop_requested = True
        await self.send(cast(T, _Stop(inbox._generation)))

    def close(self) -> None:
        """Refuse all further messages and fail the requests still queued with `MailboxClosed`.

        Senders blocked in ``send`` wake with `MailboxClosed`. Idempotent.
        """
        self._send.close()
        while True:
            try:
                item = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            self._received += 1
            if isinstance(item, Request) and not item.answered:
                item.fail(MailboxClosed("mailbox closed before the request was handled"))

    async def _send_blocking(self, item: T) -> None:
        try:
            await self._send.send(item)
        except trio.ClosedResourceError:
            raise MailboxClosed("mailbox closed: its actor was stopped") from None
        self._sent += 1
        # We waited because the mailbox was full.
        self._peak = max(self._peak, self.capacity)

    def _note_sent(self) -> None:
        self._sent += 1
        depth = self._sent - self._received
        if depth > self._peak:
            # sent - received also counts a message trio handed straight to a waiting actor
            # that has not run yet (it is in no buffer), so it can exceed the buffer by one;
            # the cap keeps "peak" a statement about the buffer.
            self._peak = min(depth, self.capacity)


@final
class Inbox(Generic[T]):
    """The actor's receiving side of a `Mailbox`, for one run of the actor.

    ``async for msg in inbox`` yields messages (plain ones and `Request` s) until a polite stop
    arrives; ``receive()`` raises `trio.EndOfChannel` at that point.
    """

    __slots__ = ("_generation", "_mailbox", "_receive", "_stopped", "stop_requested")

    def __init__(self, mailbox: Mailbox[T], generation: int) -> None:
        self._mailbox = mailbox
        self._receive = mailbox._receive
        self._generation = generation
        self._stopped = False
        #: Set as soon as a polite stop was requested, before the stop message is read, for
        #: actors busy with long work that want to check between steps.
        self.stop_requested = False

    async def receive(self) -> T | Request[T]:
        """The next message; waits while there is none.

        Raises:
            trio.EndOfChannel: a polite stop was requested (and every message before it was
                received), or the mailbox was closed and drained.
        """
        if self._stopped:
            await trio.lowlevel.checkpoint()
            raise trio.EndOfChannel
        while True:
            item = await self._receive.receive()
            self._mailbox._received += 1
            if type(item) is not _Stop:
                return item
            if item.generation == self._generation:
                self._stopped = True
                raise trio.EndOfChannel
            # A stop for an earlier run: skip it.

    def __aiter__(self) -> Inbox[T]:
        return self

    async def __anext__(self) -> T | Request[T]:
        # receive() repeated rather than called: one frame less per message in every actor loop.
        if self._stopped:
            await trio.lowlevel.checkpoint()
            raise StopAsyncIteration
        while True:
            try:
                item = await self._receive.receive()
            except trio.EndOfChannel:
                raise StopAsyncIteration from None
            self._mailbox._received += 1
            if type(item) is not _Stop:
                return item
            if item.generation == self._generation:
                self._stopped = True
                raise StopAsyncIteration
