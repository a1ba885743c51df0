"""A scriptable test actor that records what every run of it did.

The probe counts live runs per key at every start, so any test can assert the supervisor's
central invariant (never two runs of one key at once) simply by reading ``max_live``.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable
from typing import Any

import attrs
import trio

from actor_admin.runtime import ActorContext, Request


class Crash(Exception):
    """What the probe raises when told to crash."""


@attrs.define
class Probe:
    """Factory and recorder for probe actors.

    Messages (plain or as ``ask`` bodies): ``"crash"`` raises `Crash`; ``"exit"`` returns;
    ``("sleep", s)`` sleeps ``s`` seconds; ``("reply_after", s)`` answers its request after
    ``s`` seconds; anything else is recorded and, if asked, answered with
    ``("pong", key, run_number)``.
    """

    starts: dict[Hashable, list[float]] = attrs.field(factory=lambda: collections.defaultdict(list))
    received: dict[Hashable, list[Any]] = attrs.field(factory=lambda: collections.defaultdict(list))
    live: collections.Counter[Hashable] = attrs.field(factory=collections.Counter)
    max_live: collections.Counter[Hashable] = attrs.field(factory=collections.Counter)
    clean_stops: collections.Counter[Hashable] = attrs.field(factory=collections.Counter)
    cancelled: collections.Counter[Hashable] = attrs.field(factory=collections.Counter)
    #: key -> how many of its next starts crash before reporting ready.
    crash_on_start: dict[Hashable, int] = attrs.field(factory=dict)
    #: keys whose runs never read their inbox (so never see a polite stop).
    ignore_stop: set[Hashable] = attrs.field(factory=set)
    #: keys whose runs crash when they receive the polite stop.
    crash_on_stop: set[Hashable] = attrs.field(factory=set)

    def factory(self, key: Hashable) -> Any:
        return self._actor

    async def _actor(
        self, ctx: ActorContext[Hashable, Any], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        key = ctx.key
        self.starts[key].append(trio.current_time())
        self.live[key] += 1
        self.max_live[key] = max(self.max_live[key], self.live[key])
        try:
            if self.crash_on_start.get(key, 0) > 0:
                self.crash_on_start[key] -= 1
                raise Crash(f"{key!r} crashed on start")
            task_status.started()
            if key in self.ignore_stop:
                await trio.sleep_forever()
            async for msg in ctx.inbox:
                if (msg.body if isinstance(msg, Request) else msg) == "exit":
                    self.received[key].append("exit")
                    return
                await self._handle(key, msg)
            if key in self.crash_on_stop:
                raise Crash(f"{key!r} crashed while stopping")
            self.clean_stops[key] += 1
        except trio.Cancelled:
            self.cancelled[key] += 1
            raise
        finally:
            self.live[key] -= 1

    async def _handle(self, key: Hashable, msg: Any) -> None:
        body = msg.body if isinstance(msg, Request) else msg
        self.received[key].append(body)
        if body == "crash":
            raise Crash(f"{key!r} crashed")
        if isinstance(body, tuple) and body[0] == "sleep":
            await trio.sleep(body[1])
        if isinstance(body, tuple) and body[0] == "reply_after":
            await trio.sleep(body[1])
        if isinstance(msg, Request):
            msg.reply(("pong", key, len(self.starts[key])))
