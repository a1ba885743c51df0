"""How the rest of the node talks to company actors: by salon id, never by task.

The router owns the supervisor of company sessions. ``ask`` starts the salon's actor if none runs
(the supervisor guarantees exactly one) and waits for its answer; ``restore`` brings back every
salon with stored credentials at start-up, paced so a restart of thousands does not stampede
WhatsApp.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import final

import trio

from actor_admin.runtime import ActorFailed, AskTimeout, MailboxClosed, Supervisor
from actor_admin.session import Command, Frame, Outcome, Start

from ._company import CompanyMessage, GetSnapshot, Snapshot

log = logging.getLogger("actor_admin.actors")

DEFAULT_ASK_TIMEOUT_S = 10.0
# Start-up reconnects per second: a restart of thousands of salons must not stampede WhatsApp.
RESTORE_PER_SECOND = 20.0


class SessionUnavailable(Exception):
    """The salon's actor could not answer: failed, stopped, or too slow."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@final
class Router:
    def __init__(self, supervisor: Supervisor[int, CompanyMessage]) -> None:
        self.supervisor = supervisor

    async def ask(
        self,
        salon_id: int,
        command: Command,
        *,
        timeout: float = DEFAULT_ASK_TIMEOUT_S,  # noqa: ASYNC109 - the mailbox's ask timeout, not a cancel scope
    ) -> Outcome:
        """Deliver ``command`` to the salon's actor (starting it if needed) and return its answer.

        Raises:
            SessionUnavailable: the actor is ``failed``, was stopped, or did not answer in time.
        """
        answer = await self._ask(salon_id, command, timeout)
        if not isinstance(answer, Outcome):
            raise TypeError(f"a session answered {type(command).__name__} with {answer!r}")
        return answer

    async def snapshot(self, salon_id: int) -> list[Frame]:
        """The frames a new viewer must see first (a ``qr`` frame with its SVG)."""
        answer = await self._ask(salon_id, GetSnapshot(), DEFAULT_ASK_TIMEOUT_S)
        if not isinstance(answer, Snapshot):
            raise TypeError(f"a session answered GetSnapshot with {answer!r}")
        return answer.frames

    async def _ask(self, salon_id: int, body: CompanyMessage, timeout: float) -> object:  # noqa: ASYNC109
        try:
            ref = await self.supervisor.ensure(salon_id)
            return await ref.ask(body, timeout)
        except ActorFailed as exc:
            raise SessionUnavailable("failed", str(exc)) from None
        except AskTimeout:
            raise SessionUnavailable("timeout", "the WhatsApp session did not answer in time") from None
        except MailboxClosed:
            raise SessionUnavailable("stopped", "the WhatsApp session is stopping") from None

    async def stop(self, salon_id: int, *, grace: float | None = None) -> bool:
        return await self.supervisor.stop(salon_id, grace=grace)

    async def restart(self, salon_id: int) -> None:
        await self.supervisor.restart(salon_id)

    async def start(self, salon_id: int) -> bool:
        """Start the salon's actor and have it connect from stored credentials; False if it could not."""
        try:
            ref = await self.supervisor.ensure(salon_id)
            await ref.send(Start())
        except (ActorFailed, MailboxClosed) as exc:
            log.warning("could not start salon %s: %s", salon_id, exc, extra={"salon_id": salon_id})
            return False
        return True

    def running(self, salon_id: int) -> bool:
        return self.supervisor.get(salon_id) is not None

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
