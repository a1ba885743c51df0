"""The Bus: per-company topics carrying state and QR frames to websocket viewers on any node.

A viewer subscribes to its company's topic; the company's actor (on whichever node runs it)
publishes frames. Two implementations share one interface:

* :class:`LocalBus` — in-process only (unit tests, single-node setups without Redis).
* :class:`RedisBus` — also carries frames between nodes over Redis pub/sub, on channels
  ``{prefix}company:{salon_id}`` (``actor-admin:company:42``). One pub/sub connection per process
  subscribes to each topic that has local subscribers (reference counted) and fans frames out to
  them through trio memory channels.

Backpressure, the invariant "a slow viewer never slows the actor or other viewers": publishing never
waits for a subscriber or for Redis — nor yields at all: a frame is in every local subscriber's
buffer when ``publish`` returns, in the publisher's own step. A yield there cost each frame a whole
scheduling round, and with a thousand salons busy at once a round is every other salon's work: it
made up about a third of the QR-to-viewer latency (tests/bench/bench_sessions.py). Each subscriber
has a bounded buffer; a subscriber whose buffer is full when a frame arrives is **dropped** — its
iterator raises :class:`SubscriberTooSlow` after the frames already buffered — rather than silently
skipping frames, so a viewer either sees every frame of its company in order or knows it must
resubscribe (the websocket handler closes, the page reconnects and is sent the current state).
Frames for Redis go through a bounded outbox drained by one sender task; when Redis is slow or down
the outbox overflows and frames for *other nodes* are dropped and counted, local viewers are still
served.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final, Protocol, Self, cast, final

import attrs
import trio
from redis.asyncio.client import PubSub

from actor_admin.backoff import Backoff
from actor_admin.session import Frame

from ._client import RedisClient
from ._errors import RedisUnavailable

log = logging.getLogger("actor_admin.cluster")

DEFAULT_SUBSCRIBER_BUFFER: Final = 64
DEFAULT_OUTBOX_SIZE: Final = 1024
_PUBLISH_BATCH: Final = 128
_WARN_EVERY_S: Final = 60.0
# Re-dialling a lost pub/sub connection: 0.1 s doubling to 5 s. One connection per process, so
# there is no crowd to spread out: no jitter.
_RECONNECT: Final = Backoff(initial_s=0.1, factor=2.0, max_s=5.0, jitter=0.0)


class SubscriberTooSlow(Exception):
    """This subscriber's buffer overflowed and it was dropped; resubscribe to get fresh state."""


@final
@attrs.frozen
class BusStatistics:
    """Counters for ``/status`` and ``/metrics``.

    ``subscribers_dropped_total``: slow subscribers cut off. ``outbox_dropped_total``: frames that
    never reached Redis because the outbox was full. ``publish_failures_total``: frames Redis refused
    or timed out on. ``connected``: the pub/sub connection is up (always true for LocalBus).
    """

    topics: int
    subscribers: int
    published_total: int
    delivered_total: int
    subscribers_dropped_total: int
    outbox_dropped_total: int = 0
    publish_failures_total: int = 0
    connected: bool = True


class Bus(Protocol):
    """What actors (publish) and websocket handlers (subscribe) use."""

    async def publish(self, salon_id: int, frame: Frame) -> None:
        """Send ``frame`` (JSON-serialisable) to every subscriber of ``salon_id`` on every node.

        Never waits and never yields (no checkpoint): local subscribers have it on return."""
        ...

    def subscribe(self, salon_id: int) -> AbstractAsyncContextManager[Subscription]:
        """``async with bus.subscribe(salon_id) as frames: async for frame in frames: ...``"""
        ...

    def statistics(self) -> BusStatistics: ...


@final
class Subscription:
    """One subscriber's view of a topic: an async iterator of frames, in publish order.

    Frames are shared between local subscribers: treat them as read-only.
    """

    def __init__(self, salon_id: int, receive: trio.MemoryReceiveChannel[Frame], state: _Subscriber) -> None:
        self.salon_id = salon_id
        self._receive = receive
        self._state = state

    @property
    def dropped(self) -> bool:
        """True once the bus cut this subscriber off for being too slow."""
        return self._state.dropped

    async def receive(self) -> Frame:
        """The next frame.

        Raises:
            SubscriberTooSlow: the buffer overflowed; frames buffered before that were delivered.
            trio.EndOfChannel: the bus closed.
        """
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            if self._state.dropped:
                raise SubscriberTooSlow(f"subscriber of salon {self.salon_id} fell behind") from None
            raise

    def receive_nowait(self) -> Frame:
        """The next frame if one is buffered, else raises ``trio.WouldBlock``."""
        try:
            return self._receive.receive_nowait()
        except trio.EndOfChannel:
            if self._state.dropped:
                raise SubscriberTooSlow(f"subscriber of salon {self.salon_id} fell behind") from None
            raise

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Frame:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


@attrs.define(eq=False)
class _Subscriber:
    salon_id: int
    send: trio.MemorySendChannel[Frame]
    dropped: bool = False


@final
class _Fanout:
    """Local subscribers by topic, and non-blocking delivery to them."""

    def __init__(self, buffer_size: int) -> None:
        if buffer_size < 1:
            raise ValueError("buffer_size must be ≥ 1")
        self._buffer_size = buffer_size
        self._topics: dict[int, set[_Subscriber]] = {}
        self.delivered_total = 0
        self.dropped_total = 0

    def add(self, salon_id: int) -> tuple[_Subscriber, trio.MemoryReceiveChannel[Frame]]:
        send, receive = trio.open_memory_channel[Frame](self._buffer_size)
        subscriber = _Subscriber(salon_id, send)
        self._topics.setdefault(salon_id, set()).add(subscriber)
        return subscriber, receive

    def remove(self, subscriber: _Subscriber) -> None:
        subscribers = self._topics.get(subscriber.salon_id)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._topics[subscriber.salon_id]
        subscriber.send.close()

    def wanted(self, salon_id: int) -> bool:
        return salon_id in self._topics

    def topics(self) -> list[int]:
        return list(self._topics)

    def deliver(self, salon_id: int, frame: Frame) -> None:
        """Hand ``frame`` to every local subscriber without waiting; drop those that are full."""
        for subscriber in list(self._topics.get(salon_id, ())):
            try:
                subscriber.send.send_nowait(frame)
                self.delivered_total += 1
            except trio.WouldBlock:
                subscriber.dropped = True
                self.dropped_total += 1
                log.info("bus: dropped a slow subscriber of salon %s", salon_id)
                self.remove(subscriber)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # The subscriber's receiving side is gone; its context exit will tidy up too.
                self.remove(subscriber)

    def close_all(self) -> None:
        for subscribers in list(self._topics.values()):
            for subscriber in list(subscribers):
                self.remove(subscriber)

    def statistics(self, published_total: int) -> BusStatistics:
        """This process's side of the bus: its topics, subscribers and deliveries."""
        return BusStatistics(
            topics=len(self._topics),
            subscribers=sum(len(s) for s in self._topics.values()),
            published_total=published_total,
            delivered_total=self.delivered_total,
            subscribers_dropped_total=self.dropped_total,
        )


@final
class LocalBus:
    """A :class:`Bus` that only reaches subscribers in this process."""

    def __init__(self, *, buffer_size: int = DEFAULT_SUBSCRIBER_BUFFER) -> None:
        self._fanout = _Fanout(buffer_size)
        self._published_total = 0

    async def publish(self, salon_id: int, frame: Frame) -> None:
        self._published_total += 1
        self._fanout.deliver(salon_id, frame.copy())

    @asynccontextmanager
    async def subscribe(self, salon_id: int) -> AsyncIterator[Subscription]:
        subscriber, receive = self._fanout.add(salon_id)
        try:
            await trio.lowlevel.checkpoint()
            yield Subscription(salon_id, receive, subscriber)
        finally:
            self._fanout.remove(subscriber)
            receive.close()

    def statistics(self) -> BusStatistics:
        return self._fanout.statistics(self._published_total)


@final
class RedisBus:
    """A :class:`Bus` spanning every node through Redis pub/sub. Make it with :func:`open_redis_bus`."""

    def __init__(
        self,
        client: RedisClient,
        *,
        buffer_size: int = DEFAULT_SUBSCRIBER_BUFFER,
        outbox_size: int = DEFAULT_OUTBOX_SIZE,
    ) -> None:
        self._client = client
        self._fanout = _Fanout(buffer_size)
        # Frames this instance published come back from Redis too; they were already delivered
        # locally, so they are recognised by this id and skipped.
        self._origin = secrets.token_hex(8)
        self._outbox_send, self._outbox_receive = trio.open_memory_channel[tuple[str, str]](outbox_size)
        self._pubsub: PubSub | None = None
        self._subscribed: set[str] = set()
        self._confirmed: dict[str, trio.Event] = {}
        self._lock = trio.Lock()
        self._changed = trio.Event()
        self._connected = False
        self._connected_event = trio.Event()
        self._published_total = 0
        self._outbox_dropped_total = 0
        self._publish_failures_total = 0
        self._last_warning = float("-inf")

    def channel(self, salon_id: int) -> str:
        """The Redis channel of ``salon_id``'s topic."""
        return self._client.key("company", salon_id)

    async def publish(self, salon_id: int, frame: Frame) -> None:
        """Deliver to local subscribers now and queue for other nodes; never waits on Redis."""
        frame = frame.copy()
        payload = json.dumps({"o": self._origin, "s": salon_id, "f": frame}, separators=(",", ":"))
        self._published_total += 1
        self._fanout.deliver(salon_id, frame)
        try:
            self._outbox_send.send_nowait((self.channel(salon_id), payload))
        except trio.WouldBlock:
            self._outbox_dropped_total += 1
            self._warn("bus: outbox full, frames for other nodes are being dropped")
        except trio.ClosedResourceError:
            pass  # the bus is closing; local delivery above is all that is left to do

    @asynccontextmanager
    async def subscribe(self, salon_id: int) -> AsyncIterator[Subscription]:
        """Subscribe to ``salon_id``; on entry, frames from other nodes are flowing (unless Redis is
        down, in which case local frames still are and remote ones resume when it is back)."""
        channel = self.channel(salon_id)
        first = not self._fanout.wanted(salon_id)
        subscriber, receive = self._fanout.add(salon_id)
        try:
            if first:
                self._changed.set()
            confirmed = self._confirmed.setdefault(channel, trio.Event())
            if self._connected and not confirmed.is_set():
                with trio.move_on_after(self._client.timeout_s):
                    await confirmed.wait()
            else:
                await trio.lowlevel.checkpoint()
            yield Subscription(salon_id, receive, subscriber)
        finally:
            self._fanout.remove(subscriber)
            receive.close()
            if not self._fanout.wanted(salon_id):
                self._changed.set()

    async def wait_connected(self) -> None:
        """Wait until the pub/sub connection is up (for tests and readiness probes)."""
        await self._connected_event.wait()

    def statistics(self) -> BusStatistics:
        return attrs.evolve(
            self._fanout.statistics(self._published_total),
            outbox_dropped_total=self._outbox_dropped_total,
            publish_failures_total=self._publish_failures_total,
            connected=self._connected,
        )

    # -- background tasks ------------------------------------------------------------------------

    async def _sender(self) -> None:
        """Drain the outbox to Redis, batching whatever has piled up into one pipeline."""
        async for first in self._outbox_receive:
            batch = [first]
            while len(batch) < _PUBLISH_BATCH:
                try:
                    batch.append(self._outbox_receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):  # EndOfChannel: closing; send what we have
                    break
            try:
                await self._client.execute_many([("PUBLISH", channel, payload) for channel, payload in batch])
            except RedisUnavailable as exc:
                self._publish_failures_total += len(batch)
                self._warn(f"bus: publishing to Redis failed, other nodes miss frames ({exc})")

    async def _syncer(self) -> None:
        """Bring the pub/sub connection's subscriptions in line with the topics wanted locally."""
        while True:
            await self._changed.wait()
            self._changed = trio.Event()
            try:
                async with self._lock:
                    await self._sync_locked()
            except RedisUnavailable as exc:
                # The reader sees the same outage, reconnects and resubscribes everything.
                log.debug("bus: subscription change failed: %s", exc)

    async def _sync_locked(self) -> None:
        if self._pubsub is None:
            return
        wanted = {self.channel(salon_id) for salon_id in self._fanout.topics()}
        add = sorted(wanted - self._subscribed)
        drop = sorted(self._subscribed - wanted)
        if add:
            for channel in add:
                self._confirmed.setdefault(channel, trio.Event())
            await self._client.run_aio(self._pubsub.subscribe, *add)
            self._subscribed.update(add)
        if drop:
            await self._client.run_aio(self._pubsub.unsubscribe, *drop)
            self._subscribed.difference_update(drop)
            for channel in drop:
                # A subscriber arriving meanwhile has set _changed; the next pass resubscribes.
                self._confirmed.pop(channel, None)

    async def _reader(self) -> None:
        """Own the pub/sub connection: (re)connect, subscribe, and fan incoming frames out."""
        failures = 0
        while True:
            try:
                async with self._lock:
                    self._pubsub = self._client.raw.pubsub()
                    self._subscribed.clear()
                    await self._client.run_aio(self._pubsub.connect)
                    await self._sync_locked()
                self._connected = True
                self._connected_event.set()
                if failures:
                    log.info("bus: pub/sub connection to Redis restored")
                failures = 0
                while True:
                    message = await self._client.run_aio(self._pubsub.get_message, timeout=None, timeout_s=math.inf)
                    self._handle(message)
            except RedisUnavailable as exc:
                self._warn(f"bus: pub/sub connection to Redis lost, retrying ({exc})")
            except Exception:
                # Never let a surprise from redis-py take the node down with the bus: log, reconnect.
                log.exception("bus: unexpected pub/sub failure, reconnecting")
            finally:
                if self._connected:
                    self._connected = False
                    self._connected_event = trio.Event()
                await self._drop_pubsub()
            await trio.sleep(_RECONNECT.delay(failures, 0.5))
            failures += 1

    def _handle(self, message: object) -> None:
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "subscribe":
            event = self._confirmed.get(str(message.get("channel")))
            if event is not None:
                event.set()
        elif kind == "message":
            try:
                envelope = json.loads(message["data"])
                origin, salon_id, frame = envelope["o"], int(envelope["s"]), envelope["f"]
            except (ValueError, KeyError, TypeError):
                log.warning("bus: ignoring a malformed frame on %s", message.get("channel"))
                return
            if origin != self._origin and isinstance(frame, dict):
                self._fanout.deliver(salon_id, cast(Frame, frame))  # another node's actor published it

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._subscribed.clear()
        for channel, event in list(self._confirmed.items()):
            if event.is_set():
                self._confirmed[channel] = trio.Event()
        if pubsub is None:
            return
        with trio.move_on_after(self._client.timeout_s) as scope:
            scope.shield = True
            try:
                await self._client.run_aio(pubsub.aclose)
            except Exception as exc:  # a broken connection's close is best effort
                log.debug("bus: closing pub/sub failed: %r", exc)

    def _warn(self, text: str) -> None:
        now = trio.current_time()
        if now - self._last_warning >= _WARN_EVERY_S:
            self._last_warning = now
            log.warning(text)

    async def _aclose(self) -> None:
        self._outbox_send.close()
        self._fanout.close_all()


@asynccontextmanager
async def open_redis_bus(
    client: RedisClient,
    *,
    buffer_size: int = DEFAULT_SUBSCRIBER_BUFFER,
    outbox_size: int = DEFAULT_OUTBOX_SIZE,
) -> AsyncIterator[RedisBus]:
    """Run a :class:`RedisBus` (its reader, subscription and sender tasks) for the block's duration.

    Entering does not wait for Redis: the bus serves local subscribers at once and connects in the
    background, retrying with back-off while Redis is down. On exit subscribers' iterators end.
    """
    bus = RedisBus(client, buffer_size=buffer_size, outbox_size=outbox_size)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bus._reader)
        nursery.start_soon(bus._syncer)
        nursery.start_soon(bus._sender)
        try:
            yield bus
        finally:
            await bus._aclose()
            nursery.cancel_scope.cancel()
