"""``Router.start`` while the node shuts down: the ownership keeper may still be starting salons when
the supervisor begins to close (a drain that ran out of time); that start is refused, not a crash."""

from __future__ import annotations

from typing import Any

import trio

from actor_admin.actors import Router
from actor_admin.runtime import ActorContext, open_supervisor


def idle_actor(salon_id: int) -> Any:
    async def actor(ctx: ActorContext[int, Any], *, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        async for _ in ctx.inbox:
            pass

    return actor


async def test_a_start_after_the_supervisor_began_closing_is_refused_not_raised() -> None:
    async with open_supervisor(idle_actor) as supervisor:
        router = Router(supervisor)
        assert await router.start(1)
        await supervisor.aclose(grace=0.1)
        assert await router.start(2) is False
        assert not router.running(2)
