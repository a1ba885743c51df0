"""The supervisor: at most one actor per key, restarted with back-off, stopped politely.

Each key has one *keeper* task in the supervisor's nursery, and the actor runs inside that task
(no second task per actor, which keeps an idle actor close to the memory of a bare task). The
keeper loops: run the actor; when it ends, decide — by restart type, back-off and intensity —
whether and when to run it again. The key's `Mailbox` outlives the runs, so messages sent while
the actor backs off wait in it and are delivered to the next run.
"""

from __future__ import annotations

import collections
import enum
import logging
import math
import random as _random
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping
from contextlib import asynccontextmanager
from typing import Generic, Protocol, TypeVar, final

import attrs
import trio

from ._errors import ActorFailed, SupervisorClosed, sole_exception
from ._mailbox import Inbox, Mailbox, MailboxStatistics
from ._policy import Restart, SupervisorPolicy

log = logging.getLogger("actor_admin.runtime")

K = TypeVar("K", bound=Hashable)
M = TypeVar("M")
C_contra = TypeVar("C_contra", contravariant=True)


@final
class ActorState(enum.Enum):
    """Where a key's actor is in its life; ``value`` is the name ``/status`` shows."""

    #: Launched, not yet reported ready (``task_status.started()``).
    STARTING = "starting"
    RUNNING = "running"
    #: Ended unexpectedly; waiting out its back-off delay before the next run.
    BACKING_OFF = "backing_off"
    #: Crashed too often; not restarted until ``Supervisor.restart(key)``.
    FAILED = "failed"
    #: Asked to stop (or to restart); the polite stop is under way.
    STOPPING = "stopping"


_FAILED = ActorState.FAILED


@final
@attrs.frozen
class ErrorInfo:
    """An actor's error as ``/status`` shows it: the exception's type name and message.

    A group holding a single exception (what a nursery inside the actor raises) is shown as
    that exception, the one that matters.
    """

    type: str
    message: str

    def __str__(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type

    @classmethod
    def of(cls, error: BaseException) -> ErrorInfo:
        error = sole_exception(error)
        return cls(type=type(error).__qualname__, message=str(error))


@final
@attrs.frozen
class ActorStatistics(Generic[K]):
    """One key's record for ``/status``.

    Attributes:
        since: trio time of the last state change.
        restarts: how many times the actor was started again after its first run.
        last_error: the latest crash, kept after recovery so operators can see what happened.
    """

    key: K
    state: ActorState
    restarts: int
    last_error: ErrorInfo | None
    since: float
    mailbox: MailboxStatistics


@final
@attrs.frozen
class SupervisorStatistics:
    """Aggregates over all keys, cheap enough for every metrics scrape.

    Attributes:
        restarts_total: restarts since the supervisor started, including keys since removed.
        mailbox_max_depth: the deepest mailbox right now.
    """

    actors: int
    by_state: Mapping[str, int]
    restarts_total: int
    mailbox_max_depth: int


class Actor(Protocol[C_contra]):
    """What a supervised actor is: an async callable taking its `ActorContext` and trio's
    ``task_status``; it calls ``task_status.started()`` once it is ready for messages.

    A thin actor is::

        async def actor(ctx, *, task_status=trio.TASK_STATUS_IGNORED):
            task_status.started()
            async for msg in ctx.inbox:      # ends on a polite stop
                if isinstance(msg, Request):
                    msg.reply(...)

    Returning counts as a normal exit, raising an `Exception` as a crash.
    """

    def __call__(self, ctx: C_contra, /, *, task_status: trio.TaskStatus[None]) -> Awaitable[None]: ...


@final
@attrs.frozen(eq=False)
class ActorRef(Generic[K, M]):
    """The handle to a key's actor. It stays valid across restarts (it talks to the key's
    mailbox, not to one run); after the key is stopped its calls raise `MailboxClosed`."""

    key: K
    _mailbox: Mailbox[M] = attrs.field(repr=False)
    _entry: _Entry[K, M] = attrs.field(repr=False)

    @property
    def state(self) -> ActorState:
        return self._entry.state

    def send(self, msg: M) -> Awaitable[None]:
        """Put ``msg`` in the actor's mailbox, waiting while it is full: ``await ref.send(msg)``.

        Raises:
            ActorFailed: the key is in ``failed``.
            MailboxClosed: the key was stopped.
        """
        # A plain function handing over the mailbox's coroutine rather than an async one
        # awaiting it: one coroutine frame less on the hottest path of every actor (the
        # mailbox_ratio benchmark). To the caller it is the same ``await ref.send(msg)``.
        if self._entry.state is _FAILED:
            raise self._entry.failed_error()
        return self._mailbox.send(msg)

    def send_nowait(self, msg: M) -> None:
        """Put ``msg`` in the mailbox if there is room.

        Raises:
            MailboxFull: no room.
            ActorFailed: the key is in ``failed``.
            MailboxClosed: the key was stopped.
        """
        if self._entry.state is _FAILED:
            raise self._entry.failed_error()
        self._mailbox.send_nowait(msg)

    async def ask(self, msg: M, timeout: float) -> object:  # noqa: ASYNC109 (see Mailbox.ask)
        """Send ``Request(msg)`` and return the reply; see `Mailbox.ask`.

        Raises:
            AskTimeout: no reply within ``timeout`` seconds.
            ActorFailed: the key is in ``failed``.
            MailboxClosed: the key was stopped.
        """
        if self._entry.state is _FAILED:
            raise self._entry.failed_error()
        return await self._mailbox.ask(msg, timeout)

    def statistics(self) -> ActorStatistics[K]:
        return self._entry.statistics()


@final
@attrs.frozen(eq=False)
class ActorContext(Generic[K, M]):
    """What one run of an actor gets: its key, its inbox and a ref to itself (for timers that
    send the actor a message later)."""

    key: K
    inbox: Inbox[M]
    ref: ActorRef[K, M]

    @property
    def stop_requested(self) -> bool:
        """Whether a polite stop was asked for, even before its message is read."""
        return self.inbox.stop_requested


@attrs.define(eq=False)
class _Entry(Generic[K, M]):
    """A key's state, owned by its keeper task; other tasks only set flags and cancel scopes."""

    key: K
    mailbox: Mailbox[M]
    since: float
    ref: ActorRef[K, M] = attrs.field(init=False)
    state: ActorState = ActorState.STARTING
    restarts: int = 0
    last_error: ErrorInfo | None = None
    #: Consecutive unplanned restarts: the back-off exponent.
    attempt: int = 0
    #: trio times of recent unplanned ends, for the intensity limit (made on the first one).
    crashes: collections.deque[float] | None = None
    #: When the current run reported ready; None while it has not.
    run_started: float | None = None
    #: The current run's inbox and cancel scope; None between runs.
    inbox: Inbox[M] | None = None
    run_scope: trio.CancelScope | None = None
    #: The back-off or failed wait's scope; None outside it.
    wait_scope: trio.CancelScope | None = None
    stop_requested: bool = False
    restart_requested: bool = False
    retired: bool = False
    # Events are made only when someone waits, to keep an idle key small.
    #: Set when the next run is ready (or ended before being ready, or the key retired).
    ready: trio.Event | None = None
    #: Set when the current run ends.
    exited: trio.Event | None = None
    #: Set when the keeper is gone.
    done: trio.Event | None = None

    def set_state(self, state: ActorState) -> None:
        self.state = state
        self.since = trio.current_time()

    def failed_error(self) -> ActorFailed:
        return ActorFailed(f"actor {self.key!r} failed (last error: {self.last_error}); restart it to retry")

    def statistics(self) -> ActorStatistics[K]:
        return ActorStatistics(
            key=self.key,
            state=self.state,
            restarts=self.restarts,
            last_error=self.last_error,
            since=self.since,
            mailbox=self.mailbox.statistics(),
        )


@final
class _Handshake(trio.TaskStatus[None], Generic[K, M]):
    """The ``task_status`` an actor gets: ``started()`` marks the run ready."""

    __slots__ = ("_called", "_entry", "_supervisor")

    def __init__(self, supervisor: Supervisor[K, M], entry: _Entry[K, M]) -> None:
        self._supervisor = supervisor
        self._entry = entry
        self._called = False

    def started(self, value: object = None) -> None:
        if self._called:
            raise RuntimeError("called 'started' twice on the same task status")
        self._called = True
        entry = self._entry
        entry.run_started = trio.current_time()
        if entry.state is ActorState.STARTING:  # not when a stop already began
            entry.set_state(ActorState.RUNNING)
        _set_ready(entry)


@final
class Supervisor(Generic[K, M]):
    """Keeps at most one actor per key running in ``nursery``, restarting it by its policy.

    Usually made by `open_supervisor`, which owns the nursery and closes the supervisor on exit;
    constructing one directly suits code that already has a nursery (and must call `aclose`).

    Args:
        actor_factory: ``actor_factory(key)`` gives the `Actor` to run for ``key``; it is called
            for every run, so a restart gets a fresh actor.
        restart: the restart type of this kind of actor.
        random: the jitter's source, returning floats in [0, 1); inject a seeded one in tests.
        log_key: the field that names the key in log lines (each crash is logged at error with
            its traceback, and so is the move to ``failed``).
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        actor_factory: Callable[[K], Actor[ActorContext[K, M]]],
        *,
        policy: SupervisorPolicy | None = None,
        restart: Restart = Restart.PERMANENT,
        random: Callable[[], float] | None = None,
        log_key: str = "key",
    ) -> None:
        self._nursery = nursery
        self._log_key = log_key
        self._factory = actor_factory
        self._policy = policy if policy is not None else SupervisorPolicy()
        self._restart = restart
        self._random = random if random is not None else _random.Random().random
        self._entries: dict[K, _Entry[K, M]] = {}
        self._restarts_total = 0
        self._retired_total = 0
        self._closing = False

    @property
    def actors(self) -> int:
        """How many keys have an actor now, in any state (O(1), unlike :meth:`statistics`)."""
        return len(self._entries)

    @property
    def ended_total(self) -> int:
        """Actor runs ended since the supervisor started: keys retired (stopped, or failed for good)
        and restarts (O(1); the node's collector policy reads it, docs/capacity.md#garbage-collection)."""
        return self._retired_total + self._restarts_total

    @property
    def policy(self) -> SupervisorPolicy:
        return self._policy

    # -- the public operations -------------------------------------------------------------

    async def ensure(self, key: K) -> ActorRef[K, M]:
        """The ref to ``key``'s actor, starting it if none runs.

        Concurrent calls for one key start exactly one actor: the check and the insert below
        happen without a checkpoint in between. Returns once the first run is ready, or has
        ended before it was (the key then backs off; the ref still queues messages). A key
        being stopped is waited for and then started afresh.

        Raises:
            SupervisorClosed: the supervisor is shutting down.
        """
        while True:
            if self._closing:
                raise SupervisorClosed("the supervisor is shutting down")
            entry = self._entries.get(key)
            if entry is None:
                entry = self._add(key)
                # start_soon rather than nursery.start: with start, a caller that is cancelled
                # while waiting would take the new actor down with it, and every other caller
                # waiting for the same key would see it vanish.
                self._nursery.start_soon(self._keep, entry, name=f"actor {key!r}")
                break
            if not entry.stop_requested:
                break
            await self._wait_done(entry)
        ready = entry.ready
        if ready is None:
            await trio.lowlevel.checkpoint()
        else:
            await ready.wait()
        return entry.ref

    def get(self, key: K) -> ActorRef[K, M] | None:
        """The ref to ``key``'s actor, or None if the key has none (it is never started here)."""
        entry = self._entries.get(key)
        return None if entry is None else entry.ref

    def keys(self) -> list[K]:
        """The keys that have an actor (in any state), as a snapshot."""
        return list(self._entries)

    async def stop(self, key: K, *, grace: float | None = None) -> bool:
        """Stop ``key``'s actor for good and close its mailbox.

        The actor first gets a polite stop (its inbox ends after the messages already queued);
        if it has not ended ``grace`` seconds later (default: the policy's ``stop_grace_s``),
        it is cancelled. A key that is backing off or failed stops at once.
        Returns whether the key had an actor.
        """
        entry = self._entries.get(key)
        if entry is None:
            await trio.lowlevel.checkpoint()
            return False
        await self._stop_entry(entry, self._deadline(grace))
        return True

    async def restart(self, key: K, *, grace: float | None = None) -> ActorRef[K, M]:
        """Start ``key``'s actor again now, keeping its mailbox.

        A running actor is stopped as by `stop` (with ``grace``) and started again; a backing
        off actor skips the rest of its delay; a failed one has its crash history cleared and
        is started. A key without an actor is started as by `ensure`. Returns when the new run
        is ready (or ended before it was).
        """
        entry = self._entries.get(key)
        if entry is None or entry.stop_requested or (entry.inbox is None and entry.wait_scope is None):
            # Absent, going away, or added by ensure() and not yet launched by its keeper (no
            # run and no wait to end): a fresh run is what ensure gives.
            return await self.ensure(key)
        ready = entry.ready
        if ready is None:
            ready = entry.ready = trio.Event()
        if not entry.restart_requested:
            entry.restart_requested = True
            if entry.state is ActorState.FAILED:
                entry.crashes = None
                entry.attempt = 0
            await self._end_current(entry, self._deadline(grace))
        await ready.wait()
        return entry.ref

    async def aclose(self, *, grace: float | None = None) -> None:
        """Stop every actor, politely then by cancellation after one shared ``grace`` period;
        refuse new ones. Idempotent."""
        self._closing = True
        deadline = self._deadline(grace)
        async with trio.open_nursery() as nursery:
            for entry in list(self._entries.values()):
                nursery.start_soon(self._stop_entry, entry, deadline)

    def statistics(self) -> SupervisorStatistics:
        by_state: collections.Counter[str] = collections.Counter()
        max_depth = 0
        for entry in self._entries.values():
            by_state[entry.state.value] += 1
            max_depth = max(max_depth, entry.mailbox.depth)
        return SupervisorStatistics(
            actors=len(self._entries),
            by_state=dict(by_state),
            restarts_total=self._restarts_total,
            mailbox_max_depth=max_depth,
        )

    def actor_statistics(self) -> list[ActorStatistics[K]]:
        """Every key's record, for the detailed ``/status``."""
        return [entry.statistics() for entry in self._entries.values()]

    # -- the keeper ------------------------------------------------------------------------

    def _add(self, key: K) -> _Entry[K, M]:
        entry: _Entry[K, M] = _Entry(key, Mailbox(self._policy.mailbox_capacity), trio.current_time())
        entry.ref = ActorRef(key, entry.mailbox, entry)
        entry.ready = trio.Event()
        self._entries[key] = entry
        return entry

    async def _keep(self, entry: _Entry[K, M]) -> None:
        policy = self._policy
        try:
            while not entry.stop_requested:
                error = await self._run(entry)
                if entry.stop_requested:
                    break
                if error is not None:
                    entry.last_error = ErrorInfo.of(error)
                    self._log(logging.ERROR, entry, "actor crashed: %s", entry.last_error, exc_info=error)
                if entry.restart_requested:
                    entry.restart_requested = False
                    self._count_restart(entry)
                    continue
                if self._restart is Restart.TEMPORARY or (error is None and self._restart is Restart.TRANSIENT):
                    break
                now = trio.current_time()
                # A run that never got ready does not count as stable, however long it took.
                if entry.run_started is not None and now - entry.run_started >= policy.backoff_reset_after_s:
                    entry.attempt = 0
                if self._too_many_restarts(entry, now):
                    entry.set_state(ActorState.FAILED)
                    self._log(
                        logging.ERROR,
                        entry,
                        "actor failed: more than %d crashes within %g s; not restarted until restarted by hand "
                        "(last error: %s)",
                        policy.intensity_max_restarts,
                        policy.intensity_window_s,
                        entry.last_error,
                    )
                    await self._park(entry, math.inf)
                else:
                    delay = policy.backoff.delay(entry.attempt, self._random())
                    entry.attempt += 1
                    entry.set_state(ActorState.BACKING_OFF)
                    await self._park(entry, delay)
                if entry.stop_requested:
                    break
                entry.restart_requested = False
                self._count_restart(entry)
        finally:
            self._retire(entry)

    async def _run(self, entry: _Entry[K, M]) -> Exception | None:
        """One run of the actor; returns its crash, or None if it returned or was stopped."""
        inbox = entry.mailbox.inbox()
        entry.inbox = inbox
        entry.run_started = None
        entry.set_state(ActorState.STARTING)
        handshake = _Handshake(self, entry)
        error: Exception | None = None
        try:
            with trio.CancelScope() as scope:
                entry.run_scope = scope
                actor = self._factory(entry.key)
                await actor(ActorContext(entry.key, inbox, entry.ref), task_status=handshake)
        except Exception as exc:
            error = exc
        finally:
            entry.run_scope = None
            entry.inbox = None
            if entry.exited is not None:
                entry.exited.set()
                entry.exited = None
            if not handshake._called:
                _set_ready(entry)
        return error

    async def _park(self, entry: _Entry[K, M], seconds: float) -> None:
        """Wait out a back-off delay (or, failed, forever) unless a stop or restart ends it."""
        with trio.CancelScope() as scope:
            entry.wait_scope = scope
            await trio.sleep(seconds)
        entry.wait_scope = None

    def _too_many_restarts(self, entry: _Entry[K, M], now: float) -> bool:
        crashes = entry.crashes
        if crashes is None:
            crashes = entry.crashes = collections.deque()
        crashes.append(now)
        horizon = now - self._policy.intensity_window_s
        while crashes[0] <= horizon:
            crashes.popleft()
        return len(crashes) > self._policy.intensity_max_restarts

    def _log(self, level: int, entry: _Entry[K, M], msg: str, *args: object, exc_info: Exception | None = None) -> None:
        log.log(level, msg, *args, exc_info=exc_info, extra={self._log_key: entry.key, "restarts": entry.restarts})

    def _count_restart(self, entry: _Entry[K, M]) -> None:
        entry.restarts += 1
        self._restarts_total += 1

    def _retire(self, entry: _Entry[K, M]) -> None:
        entry.retired = True
        entry.set_state(ActorState.STOPPING)
        if self._entries.get(entry.key) is entry:
            del self._entries[entry.key]
            self._retired_total += 1
        entry.mailbox.close()
        _set_ready(entry)
        for event in (entry.exited, entry.done):
            if event is not None:
                event.set()

    # -- stopping --------------------------------------------------------------------------

    def _deadline(self, grace: float | None) -> float:
        return trio.current_time() + (self._policy.stop_grace_s if grace is None else grace)

    async def _stop_entry(self, entry: _Entry[K, M], deadline: float) -> None:
        if not entry.stop_requested:
            entry.stop_requested = True
            entry.set_state(ActorState.STOPPING)
            await self._end_current(entry, deadline)
        await self._wait_done(entry)

    async def _end_current(self, entry: _Entry[K, M], deadline: float) -> None:
        """End the current run — politely, then by cancellation at ``deadline`` — or the
        current back-off or failed wait, at once."""
        inbox = entry.inbox
        run_scope = entry.run_scope
        if inbox is None or run_scope is None:
            if entry.wait_scope is not None:
                entry.wait_scope.cancel()
            await trio.lowlevel.checkpoint()
            return
        entry.set_state(ActorState.STOPPING)
        exited = entry.exited
        if exited is None:
            exited = entry.exited = trio.Event()
        with trio.move_on_at(deadline):
            if not inbox.stop_requested:
                await entry.mailbox.send_stop(inbox)
            await exited.wait()
        if not exited.is_set():
            run_scope.cancel()

    async def _wait_done(self, entry: _Entry[K, M]) -> None:
        if entry.retired:
            await trio.lowlevel.checkpoint()
            return
        done = entry.done
        if done is None:
            done = entry.done = trio.Event()
        await done.wait()


def _set_ready(entry: _Entry[K, M]) -> None:
    if entry.ready is not None:
        entry.ready.set()
        entry.ready = None


@asynccontextmanager
async def open_supervisor(
    actor_factory: Callable[[K], Actor[ActorContext[K, M]]],
    *,
    policy: SupervisorPolicy | None = None,
    restart: Restart = Restart.PERMANENT,
    random: Callable[[], float] | None = None,
    log_key: str = "key",
) -> AsyncIterator[Supervisor[K, M]]:
    """A `Supervisor` with its own nursery, closed (``aclose``) when the block ends.

    The close is shielded and bounded by the policy's ``stop_grace_s``, so actors get their
    polite stop even when the block ends by cancellation. An error from the block comes out
    as itself, not wrapped in an exception group.
    """
    try:
        async with trio.open_nursery() as nursery:
            supervisor: Supervisor[K, M] = Supervisor(
                nursery, actor_factory, policy=policy, restart=restart, random=random, log_key=log_key
            )
            try:
                yield supervisor
            finally:
                with trio.CancelScope(shield=True):
                    await supervisor.aclose()
    except BaseExceptionGroup as group:
        sole = sole_exception(group)
        if sole is group:
            raise
        raise sole from None
