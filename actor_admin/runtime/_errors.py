"""The runtime's exceptions: each names one way a message can fail to reach, or come back from, an actor;
and how a trio exception group is unwrapped for the one who reads the error."""

from __future__ import annotations

from typing import final

import trio


@final
class MailboxFull(trio.WouldBlock):
    """``send_nowait`` found the mailbox at capacity.

    A subclass of `trio.WouldBlock`, following trio's ``OP_nowait`` convention, so generic
    code that handles ``WouldBlock`` keeps working; the message says which mailbox and how full.
    """


@final
class MailboxClosed(trio.ClosedResourceError):
    """The mailbox no longer accepts messages: its actor was stopped for good.

    A stale `ActorRef` raises this; ``Supervisor.ensure(key)`` gives a fresh one.
    """


@final
class AskTimeout(trio.TooSlowError):
    """No reply arrived within the ``ask`` timeout (the mailbox stayed full, or the actor was slow,
    backing off, or crashed while holding the request)."""


@final
class ActorFailed(Exception):
    """The actor's key is in the ``failed`` state: it crashed too often and is not restarted
    until ``Supervisor.restart(key)``. Messages are refused rather than queued for nobody."""


@final
class SupervisorClosed(RuntimeError):
    """The supervisor is shutting down and starts no new actors."""


def sole_exception(error: BaseException) -> BaseException:
    """The one exception inside nested single-member groups, else ``error`` itself: what a caller
    (or an operator) should see of an error that crossed nurseries."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
