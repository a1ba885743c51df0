"""Request/reply between nodes over Redis pub/sub: how a call reaches the node that owns a salon.

Each node listens on its own channel, ``{prefix}node:{node_id}:rpc``. A request names the caller's
channel for the reply, carries a correlation id and its deadline, and the reply is matched to the
waiting caller by that id. The body is any JSON value; what it means is the caller's business (the
router's codec, ``actor_admin.actors``).

A call either returns the reply or raises :class:`OwnerUnreachable` — never hangs:

* nobody listens on the node's channel (``PUBLISH`` reached no subscriber: the node is down, or
  not connected to Redis) — at once;
* Redis is down or slow (:class:`RedisUnavailable` from any step) — at once or within the client's
  timeout;
* no reply within the caller's timeout (the node is paused, overloaded, or lost the reply);
* the node refused it (too many calls in flight) or its handler failed.

The deadline travels as the *time left* when the request was sent (``budget_s``), not as a clock
reading: nodes' clocks need not agree. The serving node bounds the handler by it on its own clock,
so work for a caller that has given up stops soon after. Pub/sub delivers at most once and keeps
nothing; a lost request or reply is a timeout to the caller, which is why routed commands must be
safe to repeat by the caller (docs/cluster.md#routing).

Besides calls, a node's channel carries **nudges**: a one-way ``{"v": 1, "k": "nudge"}`` telling
that node to run its ownership round now (another node just handed it salons). A nudge carries
nothing and asks for no reply; losing one only delays the hand-over to the next heartbeat.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final, final

import attrs
import trio
from redis.asyncio.client import PubSub

from actor_admin.backoff import Backoff

from ._client import RedisClient
from ._errors import RedisUnavailable

log = logging.getLogger("actor_admin.cluster")

RPC_VERSION: Final = 1
#: Requests served at once per node; past it the caller is told at once instead of queueing.
DEFAULT_MAX_IN_FLIGHT: Final = 256
#: The longest deadline a request may state; a larger one is refused as garbled.
MAX_BUDGET_S: Final = 300.0
_RECONNECT: Final = Backoff(initial_s=0.1, factor=2.0, max_s=5.0, jitter=0.0)

#: What a node runs for each request: the request's body in, the reply's body out (JSON values).
Handler = Callable[[object], Awaitable[object]]


@final
class OwnerUnreachable(Exception):
    """The node a call was for could not be reached, or did not answer within the deadline."""


@final
@attrs.frozen
class RpcStatistics:
    """Counters for ``/status`` and tests.

    ``served_total``: requests this node answered. ``refused_total``: requests turned away (too many
    in flight). ``garbled_total``: messages on our channel that were not a valid request or reply.
    ``late_replies_total``: replies that came after their caller gave up. ``nudges_total``: nudges
    received. ``connected``: listening.
    """

    calls_in_flight: int
    served_total: int
    refused_total: int
    garbled_total: int
    late_replies_total: int
    connected: bool
    nudges_total: int = 0


@attrs.define(eq=False)
class _Pending:
    done: trio.Event = attrs.field(factory=trio.Event)
    sent: bool = False
    body: object = None
    error: str | None = None


@final
@attrs.frozen
class _Request:
    id: str
    reply_to: str
    budget_s: float
    body: object


@final
@attrs.frozen
class _Reply:
    id: str
    body: object
    error: str | None


@final
@attrs.frozen
class _Nudge:
    """Plan now: another node handed salons to this one."""


def _decode(data: object) -> _Request | _Reply | _Nudge:
    """One message from our channel; ``ValueError`` for anything that is not exactly an envelope."""
    if not isinstance(data, str | bytes):
        raise ValueError("not text")
    envelope = json.loads(data)
    if not isinstance(envelope, dict) or envelope.get("v") != RPC_VERSION:
        raise ValueError("not a version-1 envelope")
    if envelope.get("k") == "nudge" and set(envelope) == {"v", "k"}:
        return _Nudge()
    call_id = envelope.get("id")
    if not isinstance(call_id, str) or not 0 < len(call_id) <= 64:
        raise ValueError("bad id")
    kind = envelope.get("k")
    if kind == "req" and set(envelope) == {"v", "k", "id", "reply_to", "budget_s", "body"}:
        reply_to, budget = envelope["reply_to"], envelope["budget_s"]
        if not isinstance(reply_to, str) or not reply_to:
            raise ValueError("bad reply_to")
        if isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 < budget <= MAX_BUDGET_S:
            raise ValueError("bad budget_s")
        return _Request(call_id, reply_to, float(budget), envelope["body"])
    if kind == "rep" and set(envelope) == {"v", "k", "id", "body"}:
        return _Reply(call_id, envelope["body"], None)
    if kind == "rep" and set(envelope) == {"v", "k", "id", "error"} and isinstance(envelope["error"], str):
        return _Reply(call_id, None, envelope["error"])
    raise ValueError("unknown envelope")


def _encode(fields: dict[str, object]) -> str:
    return json.dumps({"v": RPC_VERSION, **fields}, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@final
class NodeRpc:
    """This node's end of request/reply: it serves requests with ``handler`` and makes calls.

    Make it with :func:`open_node_rpc`, which runs its listener. ``on_nudge`` is called (synchronously,
    so it must only set a flag) for every nudge that arrives; None ignores them.
    """

    def __init__(
        self,
        client: RedisClient,
        node_id: str,
        handler: Handler,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        on_nudge: Callable[[], None] | None = None,
    ) -> None:
        self.node_id = node_id
        self._on_nudge = on_nudge
        self._nudges_total = 0
        self._client = client
        self._handler = handler
        self._channel = self.channel(node_id)
        self._pending: dict[str, _Pending] = {}
        self._limiter = trio.CapacityLimiter(max_in_flight)
        self._connected = False
        self._ready = trio.Event()
        self._served_total = 0
        self._refused_total = 0
        self._garbled_total = 0
        self._late_replies_total = 0

    def channel(self, node_id: str) -> str:
        """The channel ``node_id`` listens on."""
        return self._client.key("node", node_id, "rpc")

    async def wait_ready(self) -> None:
        """Wait until this node listens on its channel (replies to its calls can arrive)."""
        await self._ready.wait()

    def statistics(self) -> RpcStatistics:
        return RpcStatistics(
            calls_in_flight=len(self._pending),
            served_total=self._served_total,
            refused_total=self._refused_total,
            garbled_total=self._garbled_total,
            late_replies_total=self._late_replies_total,
            connected=self._connected,
            nudges_total=self._nudges_total,
        )

    async def nudge(self, node_id: str) -> bool:
        """Tell ``node_id`` to run its ownership round now; whether a listener received it.

        A hint, never an error: with Redis down it answers False (the node plans at its next
        heartbeat anyway).
        """
        try:
            receivers = await self._client.execute("PUBLISH", self.channel(node_id), _encode({"k": "nudge"}))
        except RedisUnavailable as exc:
            log.info("rpc: could not nudge node %s (%s)", node_id, exc)
            return False
        return bool(receivers)

    async def call(self, node_id: str, body: object, *, timeout_s: float) -> object:
        """Send ``body`` to ``node_id``'s handler and return its reply's body.

        Raises:
            OwnerUnreachable: the node is not listening, Redis is down, the node refused or failed
                the call, or no reply came within ``timeout_s``.
        """
        if not 0 < timeout_s <= MAX_BUDGET_S:
            raise ValueError(f"timeout_s must be in (0, {MAX_BUDGET_S:g}]")
        call_id = secrets.token_hex(12)
        pending = self._pending[call_id] = _Pending()
        try:
            with trio.move_on_after(timeout_s) as scope:
                await self._ready.wait()  # else the reply could come before we listen for it
                payload = _encode(
                    {"k": "req", "id": call_id, "reply_to": self._channel, "budget_s": timeout_s, "body": body}
                )
                try:
                    receivers = await self._client.execute("PUBLISH", self.channel(node_id), payload)
                except RedisUnavailable as exc:
                    raise OwnerUnreachable(f"Redis is unavailable, node {node_id} cannot be asked: {exc}") from None
                if not receivers:
                    raise OwnerUnreachable(f"node {node_id} is not listening")
                pending.sent = True
                await pending.done.wait()
            if scope.cancelled_caught and not pending.sent:
                raise OwnerUnreachable(f"this node is not connected to Redis; node {node_id} cannot be asked")
            if scope.cancelled_caught:
                raise OwnerUnreachable(f"node {node_id} did not answer within {timeout_s:g} s")
            if pending.error is not None:
                raise OwnerUnreachable(f"node {node_id} could not serve the call: {pending.error}")
            return pending.body
        finally:
            del self._pending[call_id]

    # -- the listener ------------------------------------------------------------------------------

    async def _listen(self, nursery: trio.Nursery) -> None:
        """Own the pub/sub connection to our channel: (re)connect, and serve or match what arrives."""
        failures = 0

        async def read(pubsub: PubSub) -> None:
            # The whole read loop runs on the asyncio side, so a message costs no trio/asyncio
            # crossing of its own (two per routed call, ≈ 0.25 ms each); it is handed to trio
            # synchronously (an Event set, a task started), which is safe: trio-asyncio runs asyncio
            # callbacks inside a trio task (docs/cluster.md#routing).
            nonlocal failures
            while True:
                message = await pubsub.get_message(timeout=None)
                if isinstance(message, dict) and message.get("type") == "subscribe":
                    self._connected = True
                    self._ready.set()
                    if failures:
                        log.info("rpc: listening on Redis again")
                    failures = 0
                elif isinstance(message, dict) and message.get("type") == "message":
                    self._receive(nursery, message.get("data"))

        while True:
            pubsub = self._client.raw.pubsub()
            try:
                await self._client.run_aio(pubsub.subscribe, self._channel)
                await self._client.run_aio(read, pubsub, timeout_s=math.inf)
            except RedisUnavailable as exc:
                if failures == 0:
                    log.warning("rpc: lost the pub/sub connection to Redis, retrying (%s)", exc)
            except Exception:
                # A surprise from redis-py must not take the node's calls down for good: reconnect.
                log.exception("rpc: unexpected pub/sub failure, reconnecting")
            finally:
                self._disconnected()
                with trio.move_on_after(self._client.timeout_s) as scope:
                    scope.shield = True
                    try:
                        await self._client.run_aio(pubsub.aclose)
                    except Exception as exc:  # closing a broken connection is best effort
                        log.debug("rpc: closing pub/sub failed: %r", exc)
            await trio.sleep(_RECONNECT.delay(failures, 0.5))
            failures += 1

    def _disconnected(self) -> None:
        """Replies can no longer reach us: fail every waiting call now rather than at its deadline."""
        if self._connected:
            self._connected = False
            self._ready = trio.Event()
        for pending in self._pending.values():
            if pending.sent and not pending.done.is_set():
                pending.error = "this node lost its connection to Redis"
                pending.done.set()

    def _receive(self, nursery: trio.Nursery, data: object) -> None:
        try:
            message = _decode(data)
        except ValueError:  # json.JSONDecodeError is one too
            self._garbled_total += 1
            log.warning("rpc: ignoring a garbled message on %s", self._channel)
            return
        if isinstance(message, _Nudge):
            self._nudges_total += 1
            if self._on_nudge is not None:
                self._on_nudge()
            return
        if isinstance(message, _Reply):
            pending = self._pending.get(message.id)
            if pending is None or pending.done.is_set():
                self._late_replies_total += 1
                return
            pending.body, pending.error = message.body, message.error
            pending.done.set()
            return
        try:
            self._limiter.acquire_on_behalf_of_nowait(message.id)
        except trio.WouldBlock:
            self._refused_total += 1
            nursery.start_soon(self._answer, message, None, "too many calls in flight")
            return
        nursery.start_soon(self._serve, message)

    async def _serve(self, request: _Request) -> None:
        try:
            with trio.move_on_after(request.budget_s):
                try:
                    body = await self._handler(request.body)
                except Exception as exc:
                    log.exception("rpc: the handler failed")
                    await self._answer(request, None, type(exc).__name__)
                    return
                self._served_total += 1
                await self._answer(request, body, None)
        finally:
            self._limiter.release_on_behalf_of(request.id)

    async def _answer(self, request: _Request, body: object, error: str | None) -> None:
        fields: dict[str, object] = {"k": "rep", "id": request.id}
        if error is None:
            fields["body"] = body
        else:
            fields["error"] = error
        try:
            await self._client.execute("PUBLISH", request.reply_to, _encode(fields))
        except RedisUnavailable as exc:
            log.info("rpc: could not send a reply (%s); the caller will time out", exc)
        except ValueError as exc:  # the handler returned something JSON cannot carry: a bug
            log.error("rpc: unencodable reply: %s", exc)


@asynccontextmanager
async def open_node_rpc(
    client: RedisClient,
    node_id: str,
    handler: Handler,
    *,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    on_nudge: Callable[[], None] | None = None,
) -> AsyncIterator[NodeRpc]:
    """Listen on ``node_id``'s channel for the block's duration, serving requests with ``handler``
    and passing nudges to ``on_nudge``.

    Entering does not wait for Redis (calls wait for the listener, within their own deadline);
    :meth:`NodeRpc.wait_ready` does.
    """
    rpc = NodeRpc(client, node_id, handler, max_in_flight=max_in_flight, on_nudge=on_nudge)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rpc._listen, nursery)
        try:
            yield rpc
        finally:
            nursery.cancel_scope.cancel()
