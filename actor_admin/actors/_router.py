"""How the rest of the node talks to company actors: by salon id, never by task, on any node.

The router owns the supervisor of company sessions. ``ask`` starts the salon's actor if none runs
(the supervisor guarantees exactly one) and waits for its answer; ``restore`` brings back every
salon with stored credentials at start-up, paced so a restart of thousands does not stampede
WhatsApp.

Location transparency (docs/cluster.md#routing): before delivering, the router asks its
``Locator`` where the salon's actor lives. ``Here`` → this node's supervisor; ``There(node)`` → a
request over Redis to that node, whose router delivers locally (if it no longer owns the salon it
answers ``Moved`` and this router locates once more); ``Unavailable`` → ``SessionUnavailable``
with the code ``owner_unreachable``, as is any call the owner does not answer in time. The default
``SoleNode`` says ``Here`` for everything: one node behaves as it always did.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Final, Protocol, final

import attrs
import trio

from actor_admin.cluster import Here, Locator, OwnerUnreachable, SoleNode, There, Unavailable
from actor_admin.runtime import ActorFailed, AskTimeout, MailboxClosed, Supervisor, SupervisorClosed
from actor_admin.session import Command, Frame, Freeze, Outcome, Start, Uninstall

from ._company import CompanyMessage, GetSnapshot, Snapshot
from ._wire import (
    Answer,
    AnswerValue,
    Ask,
    Call,
    Failed,
    IsRunning,
    Moved,
    Restart,
    WireError,
    Withdraw,
    decode_call,
    decode_reply,
    encode_call,
    encode_reply,
)

log = logging.getLogger("actor_admin.actors")

DEFAULT_ASK_TIMEOUT_S = 10.0
# Start-up reconnects per second: a restart of thousands of salons must not stampede WhatsApp.
RESTORE_PER_SECOND = 20.0
#: The code of ``SessionUnavailable`` when the salon's owner cannot be found or reached.
OWNER_UNREACHABLE: Final = "owner_unreachable"
#: How much longer than the work itself a routed call waits, for the two trips through Redis: the
#: owner's own timeout then answers first, with its more precise reason.
ROUTE_MARGIN_S: Final = 2.0
#: Outcomes of calls delivered to another node (``/metrics``): answered, answered after the salon
#: moved once, the session there unavailable, the owner not reachable.
ROUTED_OUTCOMES: Final = ("ok", "moved", "session_unavailable", OWNER_UNREACHABLE)
#: Upper bounds (seconds) of the routed-call latency histogram: a Redis round trip is ~1 ms.
ROUTED_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class SessionUnavailable(Exception):
    """The salon's actor could not answer: failed, stopped, or too slow."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class RemoteNodes(Protocol):
    """How the router reaches other nodes (``actor_admin.cluster.NodeRpc``)."""

    async def call(self, node_id: str, body: object, *, timeout_s: float) -> object: ...


@final
@attrs.frozen
class RoutingStatistics:
    """Calls this router delivered to other nodes, for ``/metrics``.

    ``latency_buckets[i]`` counts calls that took at most ``ROUTED_LATENCY_BUCKETS[i]`` seconds
    (cumulative, as Prometheus wants them); ``latency_count`` and ``latency_sum_s`` cover all.
    """

    calls: Mapping[str, int]
    latency_buckets: tuple[int, ...]
    latency_count: int
    latency_sum_s: float


@final
class Router:
    """Delivers calls to salons' actors wherever they run.

    Args:
        supervisor: this node's company supervisor.
        locator: where each salon's actor lives (default :class:`SoleNode`: everything here).
        remote: how to reach other nodes; set later (``router.remote = rpc``) when the node's RPC
            listener, which serves with :meth:`serve`, is opened after the router.
    """

    def __init__(
        self,
        supervisor: Supervisor[int, CompanyMessage],
        *,
        locator: Locator | None = None,
        remote: RemoteNodes | None = None,
    ) -> None:
        self.supervisor = supervisor
        self.locator: Locator = SoleNode() if locator is None else locator
        self.remote = remote
        self._calls = dict.fromkeys(ROUTED_OUTCOMES, 0)
        self._latency = [0] * len(ROUTED_LATENCY_BUCKETS)
        self._latency_count = 0
        self._latency_sum_s = 0.0

    async def ask(
        self,
        salon_id: int,
        command: Command,
        *,
        timeout: float = DEFAULT_ASK_TIMEOUT_S,  # noqa: ASYNC109 - the mailbox's ask timeout, not a cancel scope
    ) -> Outcome:
        """Deliver ``command`` to the salon's actor (starting it if needed) and return its answer.

        Raises:
            SessionUnavailable: the actor is ``failed``, was stopped, or did not answer in time;
                code ``owner_unreachable`` when the node that owns the salon cannot be reached.
        """
        answer = await self._route(Ask(salon_id, command, timeout), timeout + ROUTE_MARGIN_S)
        if not isinstance(answer, Outcome):
            raise TypeError(f"a session answered {type(command).__name__} with {answer!r}")
        return answer

    async def snapshot(self, salon_id: int) -> list[Frame]:
        """The frames a new viewer must see first (the current QR among them), from the owner."""
        answer = await self._route(
            Ask(salon_id, GetSnapshot(), DEFAULT_ASK_TIMEOUT_S), DEFAULT_ASK_TIMEOUT_S + ROUTE_MARGIN_S
        )
        if not isinstance(answer, list):
            raise TypeError(f"a session answered GetSnapshot with {answer!r}")
        return answer

    async def withdraw(self, salon_id: int, command: Freeze | Uninstall, *, grace: float) -> bool:
        """Tell the salon's running actor ``command``, then stop it — on whichever node runs it.

        Never starts an actor. Returns whether one was running; returns only once it has stopped.

        Raises:
            SessionUnavailable: ``owner_unreachable``: the owner could not be reached.
        """
        ran = await self._route(Withdraw(salon_id, command, grace), 2 * grace + ROUTE_MARGIN_S)
        return _flag(ran, "withdraw")

    async def restart(self, salon_id: int) -> None:
        """Restart the salon's actor at its owner, clearing a ``failed`` one's crash history."""
        await self._route(Restart(salon_id), DEFAULT_ASK_TIMEOUT_S)

    async def is_running(self, salon_id: int) -> bool:
        """Does the salon's actor run, on whichever node owns it?"""
        running = await self._route(IsRunning(salon_id), DEFAULT_ASK_TIMEOUT_S)
        return _flag(running, "is_running")

    async def stop(self, salon_id: int, *, grace: float | None = None) -> bool:
        """Stop the salon's actor if it runs on this node."""
        return await self.supervisor.stop(salon_id, grace=grace)

    async def start(self, salon_id: int) -> bool:
        """Start the salon's actor on this node and have it connect from stored credentials; False
        if it could not (the ownership loop calls this for salons it owns)."""
        try:
            ref = await self.supervisor.ensure(salon_id)
            await ref.send(Start())
        except (ActorFailed, MailboxClosed) as exc:
            log.warning("could not start salon %s: %s", salon_id, exc, extra={"salon_id": salon_id})
            return False
        except SupervisorClosed:  # the node is shutting down (a drain that ran out of time)
            log.info("salon %s not started: the node is stopping", salon_id, extra={"salon_id": salon_id})
            return False
        return True

    def running(self, salon_id: int) -> bool:
        """Does the salon's actor run on this node?"""
        return self.supervisor.get(salon_id) is not None

    def statistics(self) -> RoutingStatistics:
        cumulative, total = [], 0
        for count in self._latency:
            total += count
            cumulative.append(total)
        return RoutingStatistics(
            calls=dict(self._calls),
            latency_buckets=tuple(cumulative),
            latency_count=self._latency_count,
            latency_sum_s=self._latency_sum_s,
        )

    # -- delivery ----------------------------------------------------------------------------------

    async def _route(self, call: Call, timeout_s: float) -> AnswerValue:
        """Deliver ``call`` where its salon lives; re-locate once if the owner says it moved."""
        for _ in range(2):
            location = await self.locator.locate(call.salon_id)
            if isinstance(location, Here):
                return await self._deliver_here(call)
            if isinstance(location, Unavailable):
                raise SessionUnavailable(OWNER_UNREACHABLE, f"no node can serve this salon now: {location.reason}")
            assert isinstance(location, There)
            reply = await self._deliver_there(location.node_id, call, timeout_s)
            if isinstance(reply, Failed):
                raise SessionUnavailable(reply.code, reply.message)
            if isinstance(reply, Answer):
                return reply.value
        raise SessionUnavailable(OWNER_UNREACHABLE, "the salon moved between nodes while it was being reached")

    async def _deliver_there(self, node_id: str, call: Call, timeout_s: float) -> Answer | Failed | Moved:
        started = trio.current_time()
        outcome = OWNER_UNREACHABLE
        try:
            if self.remote is None:
                raise OwnerUnreachable(f"salon is on node {node_id}, and this node has no route to other nodes")
            body = await self.remote.call(node_id, encode_call(call), timeout_s=timeout_s)
            try:
                reply = decode_reply(body)
            except WireError as exc:
                raise OwnerUnreachable(f"node {node_id} answered with a garbled reply ({exc})") from None
            outcome = {Answer: "ok", Failed: "session_unavailable", Moved: "moved"}[type(reply)]
            return reply
        except OwnerUnreachable as exc:
            raise SessionUnavailable(OWNER_UNREACHABLE, str(exc)) from None
        finally:
            self._observe(outcome, trio.current_time() - started)

    def _observe(self, outcome: str, seconds: float) -> None:
        self._calls[outcome] += 1
        index = bisect.bisect_left(ROUTED_LATENCY_BUCKETS, seconds)
        if index < len(self._latency):
            self._latency[index] += 1
        self._latency_count += 1
        self._latency_sum_s += seconds

    async def serve(self, body: object) -> object:
        """Serve a call another node routed here (the RPC handler): deliver it if this node owns the
        salon, else answer ``Moved``. Never raises for a bad call: it answers ``Failed``."""
        try:
            call = decode_call(body)
        except WireError as exc:
            log.warning("refused a garbled routed call: %s", exc)
            return encode_reply(Failed("bad_call", str(exc)))
        if not isinstance(await self.locator.locate(call.salon_id), Here):
            return encode_reply(Moved())
        try:
            value = await self._deliver_here(call)
        except SessionUnavailable as exc:
            return encode_reply(Failed(exc.code, str(exc)))
        try:
            return encode_reply(Answer(value))
        except WireError as exc:
            log.error("a routed call's answer has no wire form: %s", exc, extra={"salon_id": call.salon_id})
            return encode_reply(Failed("failed", "the session's answer could not be sent to the caller's node"))

    async def _deliver_here(self, call: Call) -> AnswerValue:
        if isinstance(call, Ask):
            return await self._ask_here(call.salon_id, call.command, call.timeout_s)
        if isinstance(call, Withdraw):
            return await self._withdraw_here(call.salon_id, call.command, call.grace_s)
        if isinstance(call, Restart):
            await self.supervisor.restart(call.salon_id)
            return None
        return self.running(call.salon_id)

    async def _ask_here(self, salon_id: int, command: Command | GetSnapshot, timeout: float) -> Outcome | list[Frame]:  # noqa: ASYNC109
        """The actor's answer; a snapshot as its frames, the form it travels in between nodes."""
        try:
            ref = await self.supervisor.ensure(salon_id)
            answer = await ref.ask(command, timeout)
        except ActorFailed as exc:
            raise SessionUnavailable("failed", str(exc)) from None
        except AskTimeout:
            raise SessionUnavailable("timeout", "the WhatsApp session did not answer in time") from None
        except MailboxClosed:
            raise SessionUnavailable("stopped", "the WhatsApp session is stopping") from None
        if isinstance(answer, Snapshot):
            return answer.frames
        if isinstance(answer, Outcome):
            return answer
        raise TypeError(f"a session answered {type(command).__name__} with {answer!r}")

    async def _withdraw_here(self, salon_id: int, command: Freeze | Uninstall, grace: float) -> bool:
        ref = self.supervisor.get(salon_id)  # never start an actor just to stop it
        if ref is None:
            return False
        try:
            # Tell the session first: it closes the link and shows open connect pages the new state.
            await ref.ask(command, grace)
        except (ActorFailed, AskTimeout, MailboxClosed):
            pass  # stopping below is what counts
        await self.supervisor.stop(salon_id, grace=grace)
        return True

    async def restore(
        self,
        salon_ids: Iterable[int],
        *,
        per_second: float = RESTORE_PER_SECOND,
        progress: Callable[[int], Awaitable[None] | None] | None = None,
    ) -> int:
        """Start (and ``Start``) each salon's actor, at most ``per_second`` a second."""
        interval = 1.0 / per_second
        next_at = trio.current_time()
        count = 0
        for salon_id in salon_ids:
            await trio.sleep_until(next_at)
            next_at = max(next_at + interval, trio.current_time())
            if not await self.start(salon_id):
                continue
            count += 1
            if progress is not None:
                result = progress(count)
                if result is not None:
                    await result
        return count


def _flag(answer: AnswerValue, call: str) -> bool:
    if not isinstance(answer, bool):
        raise TypeError(f"{call} was answered with {answer!r}")
    return answer
